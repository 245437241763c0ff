"""What feeding real batches costs the compiled steps, measured inside one process.

    PYTHONPATH=. python experiments/input_stall.py [--config=configs/digit_scenes.py] \
        [--window=10] [--windows=12] [--phase=both]

`loop_speed.py` compares two processes run one after the other, and on a machine whose speed
drifts between processes that ratio is noisy. This script builds the run once (`train.Run`:
the trainer's own compiled steps, state and input stream) and alternates, for each phase,
windows of `--window` steps fed the way the training loop feeds them (`train.step_batches`
through `parallel.DevicePrefetch`) with windows of the same compiled step on one batch held
on the devices (no input work at all). Both kinds of window see the same process, threads and
machine state, so the ratio of their median step times is what the input costs the loop.
Logging, evaluation and checkpoints are not included (the loop leaves them out of its rate).
"""

import statistics
import tempfile
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from jaxgan import parallel, train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digit_scenes.py", "Config file.")
_WINDOW = flags.DEFINE_integer("window", 10, "Steps per timed window.")
_WINDOWS = flags.DEFINE_integer("windows", 12, "Windows of each kind, alternated.")
_PHASE = flags.DEFINE_enum("phase", "both", ["both", "supervised", "adversarial"], "Phases.")


def timed_window(step_fn, state, inputs, count: int):
    """(state, seconds) for `count` steps on `inputs()`, synchronised at both ends."""
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(count):
        state, values = step_fn(state, *inputs())
    jax.block_until_ready((state, values))
    return state, time.perf_counter() - start


def measure(run, phase: str, window: int, windows: int) -> dict:
    config = run.config
    if phase == "supervised":
        step_fn, start = run.supervised_step, 0
    else:
        step_fn, start = run.adversarial_step, config.schedule.supervised_steps
        run.state = train.take_feature_extractor_if_due(run.state, run.mesh)
    stream = parallel.DevicePrefetch(
        train.step_batches(config, run.source, start),
        lambda item: train.to_devices(run, item),
        config.data.device_prefetch,
    )
    with stream:

        def real():
            return next(stream)[1]

        held = real()
        # Compile, then let the stream fill its buffers (the shuffle buffer's first fill).
        run.state, _ = timed_window(step_fn, run.state, lambda: held, 2)
        run.state, _ = timed_window(step_fn, run.state, real, window)
        times = {"real": [], "held": []}
        for _ in range(windows):
            for kind, inputs in (("real", real), ("held", lambda: held)):
                run.state, seconds = timed_window(step_fn, run.state, inputs, window)
                times[kind].append(seconds / window)
    real_ms, held_ms = (statistics.median(times[k]) * 1e3 for k in ("real", "held"))
    return {"real_ms": real_ms, "held_ms": held_ms, "loss": 1 - held_ms / real_ms}


def main(argv):
    del argv
    config = _CONFIG.value
    schedule = config.schedule
    needed = 2 * (_WINDOWS.value + 2) * _WINDOW.value  # steps the stream must hold
    schedule.supervised_steps = max(schedule.supervised_steps, needed)
    schedule.adversarial_steps = max(schedule.adversarial_steps, needed)
    phases = ("supervised", "adversarial") if _PHASE.value == "both" else (_PHASE.value,)
    with tempfile.TemporaryDirectory() as workdir:
        run = train.Run(config, workdir)
        print(f"{config.model.name}, {config.data.name}, batch {schedule.batch_size}, "
              f"{jax.device_count()} device(s); {_WINDOWS.value} alternated windows of "
              f"{_WINDOW.value} steps of each kind")  # fmt: skip
        print("| phase | real batches, ms per step | held batch, ms per step | loss |")
        print("| --- | ---: | ---: | ---: |")
        for phase in phases:
            row = measure(run, phase, _WINDOW.value, _WINDOWS.value)
            print(f"| {phase} | {row['real_ms']:.1f} | {row['held_ms']:.1f} | {row['loss']:+.1%} |")


if __name__ == "__main__":
    app.run(main)
