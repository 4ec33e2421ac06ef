"""Run one benchmark task in a fresh interpreter and measure its peak resident memory.

``measured(task, **kwargs)`` starts ``python -m benchmarks.measure TASK JSON``, which calls
``benchmarks.tasks.TASK(**kwargs)`` and prints its result as JSON. Two peaks come back: the task
process's own (``ru_maxrss``) and the whole process tree's (main + worker processes, summed),
sampled from /proc every 100 ms by the parent. Fresh interpreters keep one pipeline's memory and
imports out of another's numbers.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        # descendants start after their ancestor: older processes are skipped unread
        if entry.isdigit() and int(entry) >= root:
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                parents[int(entry)] = int(stat.rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def measured(task: str, timeout: float | None = None, **kwargs) -> dict:
    """``benchmarks.tasks.<task>(**kwargs)`` in a fresh interpreter, plus its peak memory (MB)."""
    cmd = [sys.executable, "-m", "benchmarks.measure", task, json.dumps(kwargs)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate(timeout=timeout)
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"benchmark task {task} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_tree_mb"] = max(peak[0] / MB, result["peak_main_mb"])
    return result


def main() -> None:
    from benchmarks import tasks

    task, kwargs = sys.argv[1], json.loads(sys.argv[2])
    result = getattr(tasks, task)(**kwargs)
    result["peak_main_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the largest single child (a tokenizing worker), once they have been waited for
    result["peak_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
