"""LSTM classifiers of review sentiment: train, evaluate, sweep, predict, export."""

import os

# torch's OpenMP threads spin while they wait for each other. When another process holds a core,
# a spinning thread waits for one that cannot run: on 2 busy cores one training step of the
# default network took 4,243 ms with 2 threads against 78 ms with 1 (benchmarks/bench_threads.py).
# Passive waiting (set here, before anything imports torch) keeps 2 threads at 87 ms there. A value
# set in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
