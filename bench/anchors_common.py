"""Shared helpers for the PyTorch and Keras anchor benchmarks (torch_bench.py, keras_bench.py).

Holds the command line, the batch sizes, the random data (the same for both frameworks,
Keras layout: channels-last images, one-hot targets), the timing loop and the memory
readings, and prints the one JSON line the harness (bench/run.sh) reads.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

MODELS = ["A", "B", "C", "D", "E", "F", "F1024"]
BATCH = {"A": 128, "B": 128, "C": 128, "D": 64, "E": 16, "F": 128, "F1024": 1024}


def parse_args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    if extra:
        extra(p)
    return p.parse_args()


def pin_cpus(n):
    """Restrict the process to n CPUs (like taskset), for runtimes without a thread knob."""
    cpus = sorted(os.sched_getaffinity(0))
    if n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_data(model, seed=0):
    """Random inputs and targets for one batch, as numpy arrays in Keras layout.

    Returns (inputs, targets): inputs a list, targets a list (one per output).
    Softmax targets are one-hot float32, sigmoid targets 0/1 float32 of shape (n, 1).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = BATCH[model]

    def onehot(k):
        return np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]

    def binary():
        return rng.integers(0, 2, (n, 1)).astype(np.float32)

    def normal(*shape):
        return rng.standard_normal((n,) + shape, dtype=np.float32)

    if model == "A":
        return [rng.integers(0, 2000, (n, 500), dtype=np.int32)], [binary()]
    if model == "B":
        return [normal(64, 64, 3)], [onehot(10)]
    if model == "C":
        return [normal(100, 128), normal(100, 128)], [binary()]
    if model == "D":
        x = rng.integers(0, 50000, (n, 500), dtype=np.int32)
        return [x], [normal(1), onehot(10), binary()]
    if model == "E":
        return [normal(64, 64, 3)], [onehot(10)]
    return [normal(64)], [onehot(10)]  # F, F1024


def rss_now_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def time_steps(fn, warmup, steps):
    """Run fn warmup times, then steps times timed one by one; returns the times in ms."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def report(args, framework, version, params, train, predict, rss_before, notes):
    """Prints the one JSON line (medians of the per-step times in ms) on stdout."""
    rec = {
        "framework": framework,
        "version": version,
        "model": args.model,
        "batch": BATCH[args.model],
        "threads": args.threads,
        "params": int(params),
        "train_ms": round(statistics.median(train), 3),
        "predict_ms": round(statistics.median(predict), 3),
        "train_ms_all": [round(t, 3) for t in train],
        "predict_ms_all": [round(t, 3) for t in predict],
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(rss_peak_mb(), 1),
        "notes": notes,
    }
    print(json.dumps(rec), flush=True)
