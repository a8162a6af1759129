"""Choosing sparse or dense per layer by measurement (the issue: "the sparse kernel wherever it is faster than
dense, dense elsewhere").

A ``Planner`` is shared by the layers of one runtime model. ``choose(key, candidates)`` times every candidate
(a zero-argument callable running the layer's product on the actual input) the first time ``key`` is seen
(layer, operation, power-of-two bucket of the column count) and remembers the fastest; later calls with the same
key reuse the decision. Policy "sparse" or "dense" skips the measurement (tests and benchmarks pin a path).

Candidates are "dense", "sparse" (the sparse kernel on all of torch's threads) and, with more than one thread,
"sparse-1-thread": on a machine whose cores are busy with other work, one OpenMP thread waiting for a
descheduled partner at every barrier can cost milliseconds, and one thread is then faster.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

import torch

log = logging.getLogger(__name__)

POLICIES = ("auto", "sparse", "dense")


def sparse_candidates(run: Callable[[int | None], object]) -> dict[str, Callable[[], object]]:
    """{"sparse": run(all threads)} plus {"sparse-1-thread": run(1)} when torch uses more than one thread."""
    candidates = {"sparse": lambda: run(None)}
    if torch.get_num_threads() > 1:
        candidates["sparse-1-thread"] = lambda: run(1)
    return candidates


def column_bucket(columns: int) -> int:
    """The power of two at or above ``columns``: decisions are shared by similar batch (x time) sizes."""
    return 1 << max(0, columns - 1).bit_length()


def time_call(function: Callable[[], object], device: torch.device, min_seconds: float = 0.002,
              repeats: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best-of-``repeats`` seconds per call, each repeat running at least ``min_seconds`` (after one warm-up).

    ``clock``: wall time by default; ``time.thread_time`` counts only the CPU time of the calling thread, which
    other processes on a busy machine do not inflate (meaningful when everything runs on one thread).
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    function()
    sync()
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, clock()
        while True:
            function()
            calls += 1
            sync()
            elapsed = clock() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


class Planner:
    """Remembers, per key, which implementation ("sparse" or "dense") a layer uses (module docstring)."""

    def __init__(self, policy: str = "auto", clock: Callable[[], float] = time.perf_counter) -> None:
        if policy not in POLICIES:
            raise ValueError(f"kernel policy {policy!r}; expected one of {POLICIES}")
        self.policy, self.clock = policy, clock
        self.decisions: dict[Hashable, dict] = {}

    def choose(self, key: Hashable, candidates: dict[str, Callable[[], object]], device: torch.device) -> str:
        """The candidate to use for ``key``: the pinned policy, else the fastest measured one."""
        if self.policy != "auto":
            return self.policy
        if key not in self.decisions:
            seconds = {name: time_call(run, device, clock=self.clock) for name, run in candidates.items()}
            choice = min(seconds, key=seconds.get)
            self.decisions[key] = {"choice": choice, "seconds": seconds}
            log.debug("kernel choice %s: %s (%s)", key, choice,
                      ", ".join(f"{name} {1e6 * s:.0f} us" for name, s in seconds.items()))
        return self.decisions[key]["choice"]

    def report(self) -> list[dict]:
        """One row per decision: key, choice and the measured seconds per candidate."""
        return [{"key": key, **decision} for key, decision in self.decisions.items()]
