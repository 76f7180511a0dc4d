"""Where the machine's cores went during a section: CPU time per role, read from the OS.

A figure that misses its target on a small machine needs this beside it: on two cores the
broker, Postgres, the services and the load generator share the same CPUs, and the
throughput of one is the CPU the others leave it. Every process on the machine is sampled
(psutil), grouped by role, and reported in cores (CPU seconds per second of the span).
"bench process" is the load generator; every service runs as its own process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import psutil

SAMPLE_EVERY = 0.5  # seconds; a process that ends between samples loses at most this much
SPEED_LOOP = 2_000_000  # iterations of the speed probe's loop


def loop_milliseconds() -> float:
    """How long one core takes now for a fixed pure-Python loop (best of five), in ms.

    The cores of this machine do not run at one speed: idle, this loop took 37.5 to
    75.0 ms within one hour, mostly about 40 (no steal time reported), and 62 to 84 ms for
    several minutes on another day. A figure is read beside the speed of its moment; two
    runs compare only at similar speeds.
    """
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for n in range(SPEED_LOOP):
            total += n
        best = min(best, time.perf_counter() - started)
    return best * 1000


def role(process: psutil.Process, bench_pid: int) -> str:
    """What a process is, for the report: broker, postgres, a service, the load generator."""
    if process.pid == bench_pid:
        return "bench process"
    name = process.info["name"] or ""
    cmdline = process.info["cmdline"] or []
    if name.startswith("tansu"):
        return "broker"
    if name.startswith("postgres"):
        return "postgres"
    for i, part in enumerate(cmdline[:-1]):
        if part == "-m" and cmdline[i + 1].startswith("services."):
            return f"service {cmdline[i + 1].removeprefix('services.')}"
    return "other"


def runqueue_seconds(pid: int) -> float | None:
    """How long the threads of a process have waited for a core, runnable but not running
    (Linux's per-thread schedstat; None where the OS does not say). Threads that ended are
    not counted, nor is one that ends while this reads."""
    try:
        tasks = list(os.scandir(f"/proc/{pid}/task"))
    except OSError:
        return None
    waited = 0
    for task in tasks:
        try:
            with open(f"{task.path}/schedstat") as stat:
                waited += int(stat.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return waited / 1e9


@dataclass
class CpuUse:
    """Cores used per role over a measured span (filled in when the span ends), and the
    cores' worth of time each role's threads waited for one: on two cores a role may use
    little CPU because it queues behind the others, not because it has nothing to do."""

    seconds: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, float] = field(default_factory=dict)

    @property
    def busy(self) -> float:
        return sum(self.cores.values())


@dataclass
class Tally:
    """CPU and run-queue seconds per role since `opened` (wall-clock seconds), from samples
    of every process's counters."""

    opened: float
    spent: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    waited: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # pid → (role, start time, CPU seconds, seconds waited for a core) at the last sample
    _seen: dict[int, tuple[str, float, float, float | None]] = field(default_factory=dict)

    def add(self, pid: int, name: str, created: float, total: float, queued: float | None) -> None:
        """One sample of a process: its role, start time (wall-clock) and counters (None:
        its run-queue time could not be read this time). A process keeps the role it had
        when first seen (an exiting one loses its name)."""
        known = self._seen.get(pid)
        if known is None or known[1] != created:  # not seen yet, or its pid was reused
            # Started within the span: all its time counts. Running before (and not read
            # by an earlier sample): from now on only, or a process up for hours would add
            # its whole past.
            if created >= self.opened:
                self.spent[name] += total
                self.waited[name] += queued or 0.0
            self._seen[pid] = (name, created, total, queued)
            return
        name, _, total_before, queued_before = known
        self.spent[name] += total - total_before
        if queued is None:  # unread: the last reading stays the baseline
            queued = queued_before
        elif queued_before is not None:  # a thread ended: less in all, so never below 0
            self.waited[name] += max(queued - queued_before, 0.0)
        self._seen[pid] = (name, created, total, queued)


@asynccontextmanager
async def cpu_use() -> AsyncIterator[CpuUse]:
    """Sample every process's CPU time while the block runs; the result is complete on exit."""
    bench_pid = os.getpid()
    tally = Tally(opened=time.time())

    def sample() -> None:
        for process in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
            times, created = process.info["cpu_times"], process.info["create_time"]
            if times is None or created is None:
                continue
            queued = runqueue_seconds(process.pid)
            name = role(process, bench_pid)
            tally.add(process.pid, name, created, times.user + times.system, queued)

    async def sampler() -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            await asyncio.to_thread(sample)

    result = CpuUse()
    await asyncio.to_thread(sample)
    started = time.perf_counter()
    task = asyncio.create_task(sampler())
    try:
        yield result
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(sample)
        result.seconds = time.perf_counter() - started

        def per_second(seconds: dict[str, float]) -> dict[str, float]:
            """Seconds per role as cores over the span, the largest first."""
            ordered = sorted(seconds.items(), key=lambda item: -item[1])
            return {name: value / result.seconds for name, value in ordered if value > 0}

        result.cores, result.waiting = per_second(tally.spent), per_second(tally.waited)
