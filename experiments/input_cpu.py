"""CPU time the training stream costs per batch: what the input takes from the step's cores.

    python experiments/input_cpu.py [--config=configs/digit_scenes.py] [--batches=250] \
        [--config.data.num_parallel_calls=1 ...]

Builds the config's training stream (`input_pipeline.train_dataset`, this process's rows of
each global batch of `schedule.batch_size`, the config's augmentation), pulls `--warmup`
batches (the shuffle buffer's first fill), then times `--batches` more and prints the process
CPU time (user + system, every thread) and the wall time per batch. CPU time, unlike wall
time, barely depends on what else the machine runs, so it can be compared across runs; on a
host where the input shares the cores with the step (a CPU), it is what the loop loses.
"""

import resource
import time

from absl import app, flags
from ml_collections import config_flags

from jaxgan.data import input_pipeline
from jaxgan.data.datasets import get_source

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digit_scenes.py", "Config file.")
_BATCHES = flags.DEFINE_integer("batches", 250, "Batches timed.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Batches pulled before timing.")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv):
    del argv
    config = _CONFIG.value
    source = get_source(config.data)
    stream = input_pipeline.train_dataset(
        source, config.data, config.schedule.batch_size, config.seed
    )
    batches = stream.take(_WARMUP.value + _BATCHES.value).as_numpy_iterator()
    for _ in range(_WARMUP.value):
        next(batches)
    wall, cpu = time.perf_counter(), cpu_seconds()
    count = sum(1 for _ in batches)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(
        f"{config.data.name}, batch {config.schedule.batch_size}, {config.data.image_size} px, "
        f"augment={config.data.augment}: {cpu / count * 1e3:.1f} ms of CPU and "
        f"{wall / count * 1e3:.1f} ms of wall time per batch ({count} batches)"
    )


if __name__ == "__main__":
    app.run(main)
