"""The training rate and time left: step time only, each phase at its own rate."""

import pytest

from jaxgan import pace


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_rate_leaves_out_excluded_time():
    clock = FakeClock()
    meter = pace.Pace(clock)
    for _ in range(4):
        clock.now += 0.5  # a step
        meter.step()
    with meter.excluded():
        clock.now += 30.0  # an evaluation, a checkpoint, a compilation
    assert meter.report("supervised") == pytest.approx(2.0)
    clock.now += 1.0
    meter.step()
    assert meter.report("supervised") == pytest.approx(1.0)  # a new window


def test_a_window_without_a_counted_step_has_no_rate():
    clock = FakeClock()
    meter = pace.Pace(clock)
    with meter.excluded():
        clock.now += 5.0
    assert meter.report("adversarial") is None
    assert "adversarial" not in meter.rates


def test_time_left_costs_each_phase_by_its_own_rate():
    clock = FakeClock()
    meter = pace.Pace(clock)
    for _ in range(10):
        clock.now += 0.1
        meter.step()
    meter.report("supervised")  # 10 steps/s
    prior = pace.adversarial_cost_prior(n_critic=3, kinds=3)
    assert prior == pytest.approx(16 / 3)
    # Before the adversarial phase is measured: its updates at the prior's cost.
    assert meter.seconds_left(100, 30, prior) == pytest.approx(10 + 30 * prior / 10)
    for _ in range(4):
        clock.now += 0.5
        meter.step()
    meter.report("adversarial")  # 2 updates/s
    assert meter.seconds_left(0, 30, prior) == pytest.approx(15.0)
    assert meter.seconds_left(100, 30, prior) == pytest.approx(10 + 15)


def test_restart_drops_the_time_before_it():
    clock = FakeClock()
    meter = pace.Pace(clock)
    clock.now += 40.0  # waiting for the first batches, compiling
    meter.restart()
    for _ in range(3):
        clock.now += 0.25
        meter.step()
    assert meter.report("supervised") == pytest.approx(4.0)
