"""Schedules against hand-computed values (Algorithm 1, Eq. 1, Zhu & Gupta's cubic)."""
import pytest

from pruning.schedule import (
    ScheduleSteps, agp_due, agp_sparsity, eq1_theta, final_gradual_threshold, gradual_due, gradual_threshold,
    hard_due, last_gradual_update, q_for_final_threshold,
)

# start 100, ramp 300, end 500, freq 10; q = 1: D = 2*200 + 3*200 = 1000, theta = 2*1*10/1000 = 0.02, phi = 0.03
STEPS = ScheduleSteps(start=100, ramp=300, end=500, freq=10)


def test_eq1_theta_hand_example():
    assert eq1_theta(1.0, STEPS) == pytest.approx(0.02)
    # q = 0.5, freq 100, start 1000, ramp 5000, end 10000: 2*0.5*100 / (2*4000 + 3*5000) = 100 / 23000
    assert eq1_theta(0.5, ScheduleSteps(1000, 5000, 10000, 100)) == pytest.approx(100 / 23000)


@pytest.mark.parametrize("step, expected", [
    (100, 0.02 * 1 / 10),                    # start: theta (itr - start + 1) / freq
    (110, 0.02 * 11 / 10),
    (299, 0.02 * 200 / 10),                  # just before ramp
    (300, (0.02 * 201 + 0.03 * 1) / 10),     # ramp: (theta (ramp - start + 1) + phi (itr - ramp + 1)) / freq
    (490, (0.02 * 201 + 0.03 * 191) / 10),   # the last update before end
])
def test_gradual_threshold_hand_values(step, expected):
    assert gradual_threshold(step, 0.02, 0.03, STEPS) == pytest.approx(expected)


def test_gradual_threshold_is_monotonic_over_update_steps():
    values = [gradual_threshold(s, 0.02, 0.03, STEPS) for s in range(101, 500) if gradual_due(s, STEPS)]
    assert len(values) == 39 and all(b > a for a, b in zip(values, values[1:]))


def test_updates_only_at_multiples_of_freq_strictly_inside_the_window():
    due = [s for s in range(0, 700) if gradual_due(s, STEPS)]
    assert due == list(range(110, 500, 10))
    assert last_gradual_update(STEPS) == 490


def test_final_threshold_is_about_q_with_phi_one_and_a_half_theta():
    # The identity behind Eq. 1: eps(end - 1) = q (1 + 2 / D) when phi = 1.5 theta (exact here: freq = 1).
    steps = ScheduleSteps(start=1000, ramp=5000, end=10000, freq=1)
    d = 2 * 4000 + 3 * 5000
    assert final_gradual_threshold(0.7, 1.5, steps) == pytest.approx(0.7 * (1 + 2 / d), rel=1e-12)
    assert final_gradual_threshold(0.7, 2.0, steps) == pytest.approx(0.7 * 28002 / 23000, rel=1e-12)  # ~1.2 q


def test_q_solve_reaches_the_requested_final_threshold():
    # eps(490) with q = 1 is 0.975 (hand value above), so a final threshold of 0.975 needs q = 1.
    assert q_for_final_threshold(0.975, 1.5, STEPS) == pytest.approx(1.0)
    q = q_for_final_threshold(0.3, 2.0, STEPS)
    theta = eq1_theta(q, STEPS)
    assert gradual_threshold(490, theta, 2.0 * theta, STEPS) == pytest.approx(0.3)


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (10, 0.0), (20, 0.8 * (1 - 0.75 ** 3)), (30, 0.7), (40, 0.8 * (1 - 0.25 ** 3)), (50, 0.8), (90, 0.8),
])
def test_agp_cubic_targets(step, expected):
    assert agp_sparsity(step, 0.0, 0.8, ScheduleSteps(10, 10, 50, 10)) == pytest.approx(expected)


def test_agp_and_hard_due_steps():
    steps = ScheduleSteps(start=10, ramp=10, end=45, freq=10)
    assert [s for s in range(100) if agp_due(s, steps)] == [10, 20, 30, 40, 45]
    assert [s for s in range(100) if hard_due(s, steps)] == [10]
