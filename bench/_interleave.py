"""Shared timing helpers for the CPU benches that print ratio tables."""
from __future__ import annotations

import os
import platform
import time

import torch


def interleaved_medians(fns, rounds: int, sync=lambda: None):
    """Median wall time of each callable in `fns`, timed in alternation (one warm-up call each) so
    that machine noise hits all of them alike."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for f, t in zip(fns, times):
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            t.append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] for t in times]


def machine_line(threads: int, rounds: int, what: str = "") -> str:
    return (f"machine: {platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()}, torch {torch.__version__}, "
            f"{threads} threads{', ' + what if what else ''}, medians of {rounds} interleaved rounds")


def start_table(threads: int, default_rounds: int, what: str = "") -> int:
    """For a bench's script form: parses --rounds, sets sonicore's and torch's thread counts, prints
    the machine line; returns the number of rounds."""
    import argparse

    import sonicore
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=default_rounds)
    rounds = ap.parse_args().rounds
    sonicore.set_num_threads(threads)
    torch.set_num_threads(threads)
    print(machine_line(threads, rounds, what))
    return rounds
