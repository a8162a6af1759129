"""Choosing sparse or dense per layer by measurement (the issue: "the sparse kernel wherever it is faster than
dense, dense elsewhere").

A ``Planner`` is shared by the layers of one runtime model. ``choose(key, candidates)`` times every candidate
(a zero-argument callable running the layer's product on the actual input) the first time ``key`` is seen
(layer, operation, power-of-two bucket of the column count) and remembers the decision; later calls with the same
key reuse it. Policy "sparse" or "dense" skips the measurement (tests and benchmarks pin a path).

"Never slower than dense": the candidates are timed in interleaved rounds (a burst of load from other processes
then slows all of them, not just the one being timed), and a sparse candidate replaces dense only when it is at
least ``margin`` times faster (1.1 by default). Without the margin, a near-tie at low sparsity went to the sparse
kernel on one noisy measurement and ran at 0.76x of dense (docs/results.md, RNN 1760 at 0 %, batch 1).

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


def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _seconds_per_call(function: Callable[[], object], sync: Callable[[], None], min_seconds: float,
                      clock: Callable[[], float]) -> float:
    """Seconds per call of ``function``, called repeatedly for at least ``min_seconds``."""
    calls, start = 0, clock()
    while True:
        function()
        calls += 1
        sync()
        elapsed = clock() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def time_calls(functions: dict[str, Callable[[], object]], device: torch.device, min_seconds: float = 0.002,
               repeats: int = 3, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Best-of-``repeats`` seconds per call of each function (after one warm-up call each), interleaved: every
    round times each function in turn for at least ``min_seconds``.

    ``clock``: wall time by default; ``time.thread_time`` counts only the CPU time of the calling thread, which
    other processes on a busy machine do not inflate (meaningful when everything runs on one thread).
    """
    sync = _synchronizer(device)
    for function in functions.values():
        function()
    sync()
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            best[name] = min(best[name], _seconds_per_call(function, sync, min_seconds, clock))
    return best


def pick(seconds: dict[str, float], margin: float) -> str:
    """The fastest candidate, except that "dense" (when measured) keeps its place unless the fastest other
    candidate takes at most ``1 / margin`` of its time."""
    fastest = min(seconds, key=seconds.get)
    if "dense" in seconds and fastest != "dense" and seconds[fastest] * margin > seconds["dense"]:
        return "dense"
    return fastest


class Planner:
    """Remembers, per key, which implementation ("sparse" or "dense") a layer uses (module docstring)."""

    def __init__(self, policy: str = "auto", clock: Callable[[], float] = time.perf_counter,
                 margin: float = 1.1) -> None:
        if policy not in POLICIES:
            raise ValueError(f"kernel policy {policy!r}; expected one of {POLICIES}")
        if margin < 1.0:
            raise ValueError(f"planner margin {margin}: must be >= 1 (sparse must be at least as fast as dense)")
        self.policy, self.clock, self.margin = policy, clock, margin
        self.decisions: dict[Hashable, dict] = {}

    def choose(self, key: Hashable, candidates: dict[str, Callable[[], object]], device: torch.device) -> str:
        """The candidate to use for ``key``: the pinned policy, else the measured choice (``pick``)."""
        if self.policy != "auto":
            return self.policy
        if key not in self.decisions:
            seconds = time_calls(candidates, device, clock=self.clock)
            choice = pick(seconds, self.margin)
            self.decisions[key] = {"choice": choice, "seconds": seconds}
            log.debug("kernel choice %s: %s (%s)", key, choice,
                      ", ".join(f"{name} {1e6 * s:.0f} us" for name, s in seconds.items()))
        return self.decisions[key]["choice"]

    def report(self) -> list[dict]:
        """One row per decision: key, choice and the measured seconds per candidate."""
        return [{"key": key, **decision} for key, decision in self.decisions.items()]
