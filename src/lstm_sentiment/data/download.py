"""Download, verify and unpack the full Amazon Review Polarity set (the `make data` step).

    python -m lstm_sentiment.data.download [--dest DIR] [--url URL] [--sha256 HEX | --md5 HEX]
                                           [--force]

The result is ``train.csv`` and ``test.csv`` (Xiang Zhang's CSV form, ``"label","title","text"``
rows) in the folder training looks in (``files.FULL_SET_DIR``; with ``--dest DIR``, a folder of
that name in DIR). Running it again does nothing once those files exist.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from lstm_sentiment.data.files import DOWNLOAD_DIR, FULL_SET_DIR, FULL_SET_FILES
from lstm_sentiment.errors import UserError, user_errors_exit

DEFAULT_URL = "https://s3.amazonaws.com/fast-ai-nlp/amazon_review_polarity_csv.tgz"
# Whole-file sha256 and size published for exactly this URL by Hugging Face `datasets`
# (datasets/amazon_polarity/dataset_infos.json, "download_checksums"); FastAI.jl's dataset
# registry lists the same sha256. fastai's own checks.txt agrees on the size, but its md5 covers
# only the first MiB of the file, so it cannot be checked against a whole-file md5.
DEFAULT_SHA256 = "d2a3ee7a214497a5d1b8eaed7c8d7ba2737de00ada3b0ec46243983efa100361"
DEFAULT_SIZE = 688_339_454
EXTRACTED = FULL_SET_DIR.name  # the folder the archive unpacks to, inside --dest
SPLITS = FULL_SET_FILES
CHUNK = 1 << 20
TIMEOUT_S = 60  # per socket operation, not for the whole (~650 MiB) transfer
_HEX_LEN = {"md5": 32, "sha256": 64}


class DownloadError(UserError):
    """A download, checksum or archive problem; the message is one line meant for the user."""


def download_dataset(
    dest: Path = DOWNLOAD_DIR,
    url: str = DEFAULT_URL,
    md5: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
    size: int | None = None,
) -> Path:
    """Fetch ``url`` into ``dest``, verify it, unpack it; return the folder holding the splits.

    ``md5``/``sha256`` are whole-file digests (give at most one). With neither, the default URL is
    checked against its published sha256 and size; any other URL is only checked for length.
    """
    dest = Path(dest)
    if md5 and sha256:
        raise DownloadError("give either an md5 or a sha256 checksum, not both")
    if md5 is None and sha256 is None and url == DEFAULT_URL:
        sha256, size = DEFAULT_SHA256, DEFAULT_SIZE if size is None else size
    algo, expected = ("sha256", sha256) if sha256 else ("md5", md5) if md5 else (None, None)
    if expected and not re.fullmatch(f"[0-9a-fA-F]{{{_HEX_LEN[algo]}}}", expected):
        raise DownloadError(f"the {algo} must be {_HEX_LEN[algo]} hex digits, got {expected!r}")
    expected = expected.lower() if expected else None

    # No markup: paths and URLs may contain "[...]", which rich would read as styles.
    console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    say = console.print if progress else _quiet
    out = dest / EXTRACTED
    if not force and _has_splits(out):
        say(f"Already there: {out}")
        return out

    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / (PurePosixPath(urllib.parse.urlsplit(url).path).name or f"{EXTRACTED}.tgz")
    if algo is None:
        say(f"No checksum for {url}: the download is only checked for length.", style="yellow")
    fetch = True
    if not force and archive.is_file():
        problem = _mismatch(*_digest_file(archive, algo), size, algo, expected)
        fetch = problem is not None
        say(
            f"{archive} is damaged ({problem}); downloading it again"
            if fetch
            else f"Using the verified archive {archive}"
        )
    if fetch:
        _fetch(url, archive, out, algo, expected, size, progress)
    say(f"Extracting {archive} ...")
    _extract(archive, out)
    say(f"Done: {out / SPLITS[0]} and {out / SPLITS[1]}")
    return out


def _quiet(*_args: object, **_kwargs: object) -> None:
    pass


def _has_splits(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SPLITS)


def _hash(algo: str | None):
    # With no checksum to compare, hashing anyway costs little and keeps one code path.
    return hashlib.new(algo or "sha256")


def _digest_file(path: Path, algo: str | None) -> tuple[int, str]:
    digest = _hash(algo)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def _mismatch(got_size: int, got: str, size: int | None, algo: str | None, expected: str | None):
    """Describe how a file differs from what was published, or None when it matches."""
    if size is not None and got_size != size:
        return f"size mismatch: expected {size} bytes, got {got_size}"
    if expected is not None and got != expected:
        return f"{algo} mismatch: expected {expected}, got {got}"
    return None


def _fetch(url, archive, out, algo, expected, size, progress) -> None:
    # Stream into a .part file and rename only once verified, so an existing archive is never a
    # half-written or corrupt one, whatever interrupts the transfer.
    part = archive.with_name(archive.name + ".part")
    hint = (
        f"Download it by hand from {url}, unpack it and put train.csv/test.csv into {out}, "
        "or set REVIEWS_DIR to a folder holding them."
    )
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    digest, got = _hash(algo), 0
    try:
        with (
            urllib.request.urlopen(url, timeout=TIMEOUT_S) as response,
            open(part, "wb") as f,
            Progress(*columns, console=Console(stderr=True), disable=not progress) as bar,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            if None not in (size, total) and size != total:
                # Fail before spending the transfer on a file that cannot match.
                raise DownloadError(f"{url}: offers {total} bytes, expected {size}. {hint}")
            task = bar.add_task(f"Downloading {archive.name}", total=total)
            while chunk := response.read(CHUNK):
                f.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                bar.advance(task, len(chunk))
        # urllib reports a connection closed early as a plain end of data.
        if total is not None and got != total:
            raise DownloadError(f"could not download {url}: got {got} of {total} bytes. {hint}")
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}. {hint}") from None
    except urllib.error.URLError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {e.reason}. {hint}") from None
    except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
        part.unlink(missing_ok=True)
        reason = str(e) or type(e).__name__
        raise DownloadError(f"could not download {url}: {reason}. {hint}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise

    problem = _mismatch(got, digest.hexdigest(), size, algo, expected)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {problem}; the download was deleted. {hint}")
    os.replace(part, archive)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    # The data set holds only plain files and folders; anything else (links, devices) or a path
    # that could land outside the extraction folder means the archive is not what we expect.
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
        raise DownloadError(f"{archive}: refusing unsafe archive member {member.name!r}")


def _extract(archive: Path, out: Path) -> None:
    # Unpack into a scratch folder beside the target and move the result into place, so an
    # interrupted or refused extraction never leaves a half-filled data folder behind.
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=out.parent))
    # Python's own "data" filter (3.10.12+/3.11.4+) is a second guard behind _check_member.
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                # One pass over the stream: a .tgz cannot seek back cheaply.
                for member in tar:
                    _check_member(member, archive)
                    tar.extract(member, scratch, **safe)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(
                f"cannot unpack {archive}: {e} (if it is damaged, use --force)"
            ) from None
        found = next((d for d in (scratch, *sorted(scratch.iterdir())) if _has_splits(d)), None)
        if found is None:
            raise DownloadError(f"{archive} holds no {' and '.join(SPLITS)}")
        if not out.exists():
            os.replace(found, out)
            return
        # Keep anything else living in an existing folder; replace only what the archive holds.
        for item in found.iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_sentiment.data.download",
        description="Download and unpack the full Amazon Review Polarity data set.",
    )
    parser.add_argument(
        "--dest", type=Path, default=DOWNLOAD_DIR, help=f"folder to put it in ({DOWNLOAD_DIR})"
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="where to download the .tgz from")
    digests = parser.add_mutually_exclusive_group()
    digests.add_argument("--sha256", help="expected whole-file sha256 of the archive")
    digests.add_argument("--md5", help="expected whole-file md5 of the archive")
    parser.add_argument("--force", action="store_true", help="download and unpack again")
    args = parser.parse_args(argv)
    try:
        with user_errors_exit():
            out = download_dataset(
                args.dest, args.url, md5=args.md5, sha256=args.sha256, force=args.force
            )
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    for name in SPLITS:
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
