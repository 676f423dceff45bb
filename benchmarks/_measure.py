"""Shared by the benchmarks: wall time and peak RSS of a phase, measured in this process."""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    peak_rss: int = 0        # highest RSS sampled during the phase
    start_rss: int = 0
    cpu_seconds: float = 0.0  # user + system time of all this process's threads during the phase
    machine_cpu_seconds: float = 0.0  # busy time of all the machine's cores (worker processes too)

    @property
    def growth(self) -> int:
        return self.peak_rss - self.start_rss


@contextmanager
def measure(name: str, interval: float = 0.02):
    """Time a block and sample its RSS every `interval` seconds in a background thread."""
    gc.collect()
    phase = Phase(name, start_rss=rss_bytes())
    phase.peak_rss = phase.start_rss
    done = threading.Event()

    def sample():
        while not done.wait(interval):
            phase.peak_rss = max(phase.peak_rss, rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu_started, machine_started = time.perf_counter(), _cpu_seconds(), _machine_cpu_seconds()
    try:
        yield phase
    finally:
        phase.seconds = time.perf_counter() - started
        phase.cpu_seconds = _cpu_seconds() - cpu_started
        phase.machine_cpu_seconds = _machine_cpu_seconds() - machine_started
        done.set()
        sampler.join()
        phase.peak_rss = max(phase.peak_rss, rss_bytes())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_cpu_seconds() -> float:
    """Busy time of all cores since boot (/proc/stat: all but idle and iowait), 0 where unknown."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"
