"""The training rate and the time left, from step time alone.

The loop reports how fast it trains and how long the rest will take. Both count only the
time the steps take: compilation (a phase's first step in a process), evaluation and
checkpoint saving are measured separately and left out, and each phase is costed by its own
measured rate (an adversarial update reads n_critic * kinds + 1 batches and costs several BCE
steps, but not that many).
"""

import time

PHASES = ("supervised", "adversarial")


def adversarial_cost_prior(n_critic: int, kinds: int) -> float:
    """An adversarial update's cost in BCE steps, before its own rate has been measured.

    A forward pass costs about a third of a training step (forward + backward). Each critic
    update runs f_ext forward on each of its `kinds` batches and G forward on the generated
    pairs' batch (the critic itself is small); the generator update is a BCE step plus an
    f_ext forward pass. With the paper's settings: (3 * 4 + 4) / 3 = 5.3 BCE steps, the
    update's FLOP count. The real cost is lower (the critic's passes need no backward through
    the backbone and batch better), so the prior errs long, and is replaced as soon as the
    adversarial phase has logged once.
    """
    return (n_critic * (kinds + 1) + 4) / 3


class Pace:
    """Steps per second in each phase, over the window since the last report.

    `step(phase)` counts a dispatched step; `excluded()` wraps work whose time is not step
    time (it must start after the steps before it have finished, which the loop ensures by
    fetching their results first); `report(phase)` is called right after a synchronising
    fetch and returns the window's rate, then opens a new window.
    """

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self._window_start = clock()
        self._window_steps = 0
        self._excluded = 0.0
        self.rates: dict[str, float] = {}

    def step(self) -> None:
        self._window_steps += 1

    def restart(self) -> None:
        """Opens a new window now, dropping the current one (e.g. after the wait for the first
        batch and the compilation, which are no step's time)."""
        self._window_start, self._window_steps, self._excluded = self._clock(), 0, 0.0

    def exclude(self, seconds: float) -> None:
        self._excluded += seconds

    def excluded(self):
        return _Excluded(self)

    def report(self, phase: str) -> float | None:
        """The rate over the window (None if it held no counted step); remembered per phase."""
        now = self._clock()
        seconds = now - self._window_start - self._excluded
        rate = self._window_steps / seconds if self._window_steps and seconds > 0 else None
        if rate is not None:
            self.rates[phase] = rate
        self._window_start, self._window_steps, self._excluded = now, 0, 0.0
        return rate

    def seconds_left(self, supervised_left: int, adversarial_left: int, prior: float) -> float:
        """The steps left in each phase at each phase's measured rate; an unmeasured
        adversarial rate is the supervised one over `prior` (`adversarial_cost_prior`)."""
        supervised = self.rates.get("supervised")
        adversarial = self.rates.get("adversarial")
        if adversarial is None and supervised is not None:
            adversarial = supervised / prior
        if supervised is None and adversarial is not None:
            supervised = adversarial * prior
        if supervised is None:
            return float("nan")
        return supervised_left / supervised + adversarial_left / adversarial


class _Excluded:
    def __init__(self, pace: Pace):
        self._pace = pace

    def __enter__(self):
        self._start = self._pace._clock()

    def __exit__(self, *exc_info):
        self._pace.exclude(self._pace._clock() - self._start)
