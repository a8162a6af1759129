"""How much to prune and when: pure functions of the global step.

Step numbering: ``step`` is the number of optimizer steps completed. The pruner is called right after each
``optimizer.step()``, so its first call has ``step == 1``; this ``step`` is the paper's ``itr``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleSteps:
    """Resolved step numbers of a schedule.

    start: start_itr (gradual/block/agp) or the step of one-shot pruning (hard).
    ramp: ramp_itr, where the threshold slope changes from theta to phi (gradual/block only).
    end: end_itr; thresholds and masks are frozen from here on.
    freq: masks are recomputed every ``freq`` steps (AGP's dt).
    """

    start: int
    ramp: int
    end: int
    freq: int


def gradual_due(step: int, steps: ScheduleSteps) -> bool:
    """Algorithm 1: masks update only when ``start_itr < itr < end_itr`` and ``itr % freq == 0``."""
    return steps.start < step < steps.end and step % steps.freq == 0


def last_gradual_update(steps: ScheduleSteps) -> int:
    """The last step at which :func:`gradual_due` holds: it sets the final (frozen) threshold."""
    return (steps.end - 1) // steps.freq * steps.freq


def check_gradual(steps: ScheduleSteps) -> None:
    """Reject schedules Algorithm 1 cannot run: needs start <= ramp <= end and at least one update step."""
    if not 0 <= steps.start <= steps.ramp <= steps.end or steps.freq < 1:
        raise ValueError(f"gradual pruning needs 0 <= start <= ramp <= end and freq >= 1, got {steps}; "
                         "set pruning.start_step/ramp_step/end_step for short runs")
    if last_gradual_update(steps) <= steps.start:
        raise ValueError(f"no mask update in ({steps.start}, {steps.end}) with freq {steps.freq}: "
                         "lower pruning.freq or widen the window")


def check_agp(steps: ScheduleSteps) -> None:
    """AGP needs 0 <= t0 <= t0 + n dt and dt >= 1."""
    if not 0 <= steps.start <= steps.end or steps.freq < 1:
        raise ValueError(f"agp pruning needs 0 <= start <= end and freq >= 1, got {steps}")


def check_hard(steps: ScheduleSteps) -> None:
    """The pruner is first called with step 1, so one-shot pruning needs start >= 1."""
    if steps.start < 1:
        raise ValueError(f"hard pruning happens at step start >= 1 (the first optimizer step), got {steps}")


def eq1_theta(q: float, steps: ScheduleSteps) -> float:
    """Eq. 1: ``theta = 2 q freq / (2 (ramp_itr - start_itr) + 3 (end_itr - ramp_itr))``."""
    return 2 * q * steps.freq / (2 * (steps.ramp - steps.start) + 3 * (steps.end - steps.ramp))


def gradual_threshold(step: int, theta: float, phi: float, steps: ScheduleSteps) -> float:
    """Algorithm 1's threshold eps(itr), with theta = start_slope and phi = ramp_slope.

    ``eps = theta (itr - start_itr + 1) / freq`` for ``itr < ramp_itr``, else
    ``eps = (theta (ramp_itr - start_itr + 1) + phi (itr - ramp_itr + 1)) / freq``.
    """
    if step < steps.ramp:
        return theta * (step - steps.start + 1) / steps.freq
    return (theta * (steps.ramp - steps.start + 1) + phi * (step - steps.ramp + 1)) / steps.freq


def final_gradual_threshold(q: float, ramp_multiple: float, steps: ScheduleSteps) -> float:
    """eps at the last update step t_L when theta follows Eq. 1 from ``q`` and phi = ramp_multiple * theta.

    With D = 2 (r - s) + 3 (e - r) and m = ramp_multiple this is, for t_L >= r,
    ``2 q ((r - s + 1) + m (t_L - r + 1)) / D``. With m = 1.5 and t_L = e - 1 it is ``q (1 + 2 / D)``: the
    identity behind Eq. 1 (final threshold ~ q). With m = 2 it is about 1.2 q at Table 1's step ratios.
    """
    theta = eq1_theta(q, steps)
    return gradual_threshold(last_gradual_update(steps), theta, ramp_multiple * theta, steps)


def q_for_final_threshold(final_threshold: float, ramp_multiple: float, steps: ScheduleSteps) -> float:
    """Solve for the q whose Eq. 1 schedule ends exactly at ``final_threshold``.

    eps is linear in q, so q = final_threshold / final_gradual_threshold(1, ...), i.e.
    ``q = eps_final D / (2 ((r - s + 1) + m (t_L - r + 1)))`` (for t_L >= r). Deviation from the paper, which
    takes q as the 90th percentile of a trained dense model and lands at *about* 90% sparsity.
    """
    return final_threshold / final_gradual_threshold(1.0, ramp_multiple, steps)


def agp_due(step: int, steps: ScheduleSteps) -> bool:
    """Zhu & Gupta (2017): prune at t0, t0 + dt, ..., and at t0 + n dt (= end) even when off the grid."""
    return steps.start <= step <= steps.end and ((step - steps.start) % steps.freq == 0 or step == steps.end)


def agp_sparsity(step: int, initial: float, final: float, steps: ScheduleSteps) -> float:
    """Zhu & Gupta (2017) Eq. 1: ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3``.

    t0 = start and n dt = end - start; t is clamped to [t0, t0 + n dt] (s_i before, s_f after).
    """
    span = steps.end - steps.start
    progress = 1.0 if span == 0 else min(max((step - steps.start) / span, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def hard_due(step: int, steps: ScheduleSteps) -> bool:
    """One-shot (hard) pruning happens once, at ``steps.start``."""
    return step == steps.start
