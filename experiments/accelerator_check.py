"""One command for a GPU or TPU host: train both phases of the main command on a prepared
COCO-shaped dataset, without TensorFlow, and print one table of what feeding costs.

On any machine (a CPU is enough; no TensorFlow, no download), prepare the data once:

    python experiments/accelerator_check.py --prepare --data_dir=/tmp/check_data

It writes 4,096 generated 256 px images with 80 labels as the records `configs/coco.py`
reads (in COCO's place under that data_dir: train 3,584, validation 512). Carry the folder to
the accelerator host (`rsync -a /tmp/check_data HOST:/tmp/`), then there:

    python experiments/accelerator_check.py --data_dir=/tmp/check_data

trains `configs/coco.py:resnet101` in bfloat16 at 224 px through `train.train_and_evaluate`,
twice: the supervised phase at batch 256 and the adversarial phase at batch 32 (the batch
sizes the targets name), then, in the same process, times the compiled steps alone on
batches already on the device, the input pipeline alone (host batches, then host batches
moved and augmented on the device), the time to the first update, and the device's peak
memory. `--tiny` runs the same on a tiny model (the test suite runs it on the CPU).
"""

import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxgan import runtime, train  # noqa: E402
from jaxgan.data import augment, coco, records  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the generated records are.")
_PREPARE = flags.DEFINE_bool("prepare", False, "Generate and prepare the dataset, then stop.")
_IMAGES = flags.DEFINE_integer("images", 4096, "--prepare: images generated.")
_TINY = flags.DEFINE_bool("tiny", False, "A tiny model and dataset (CPU, the tests).")
_STEPS = flags.DEFINE_integer("steps", 60, "Timed loop steps of each phase.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folders (default: a temporary one).")
flags.mark_flags_as_required(["data_dir"])

VALIDATION_FRACTION = 8  # one image in 8 goes to the validation split


def generated_images(count: int, side: int, seed: int = 0):
    """(uint8 square, 80-label multi-hot) pairs: blobs of a few label-dependent colours on
    noise, so the model has something to fit; COCO-shaped labels (2.9 a picture)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (coco.NUM_LABELS, 3))
    yy, xx = np.mgrid[0:side, 0:side]
    for _ in range(count):
        labels = np.zeros(coco.NUM_LABELS, np.uint8)
        labels[rng.choice(coco.NUM_LABELS, rng.integers(1, 6), replace=False)] = 1
        image = rng.integers(0, 64, (side, side, 3)).astype(np.uint8)
        for label in np.flatnonzero(labels):
            cy, cx, r = rng.integers(0, side, 2).tolist() + [
                int(rng.integers(side // 8, side // 3))
            ]
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = palette[label]
        yield image, labels


def prepare(data_dir: str, count: int, image_size: int) -> str:
    side = augment.frame_side(image_size)
    path = records.records_dir(data_dir, f"coco/2014/{coco.TFDS_VERSION}", side)
    writer = records.Writer(path, coco.CLASS_NAMES, side, {"generated": count})
    for i, (image, labels) in enumerate(generated_images(count, side)):
        writer.add("validation" if i % VALIDATION_FRACTION == 0 else "train", image, labels)
    prepared = writer.close(["train", "validation"])
    print(f"prepared {prepared.sizes()} at {side} px in {path}")
    return path


def check_config(data_dir: str, batch_size: int, supervised: int, adversarial: int, tiny: bool):
    import runpy

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = runpy.run_path(os.path.join(root, "configs", "coco.py"))["get_config"]("resnet101")
    config.model.dtype = "bfloat16"
    config.data.data_dir = data_dir
    config.data.train_split, config.data.validation_split = "train", "validation[:50%]"
    config.data.test_split = "validation[50%:]"
    if tiny:
        config.model.name, config.model.width, config.model.dtype = "resnet_small", 4, "float32"
        config.data.image_size, config.data.normalization = 16, "unit"
        config.critic.update(embed_dim=8, hidden_dim=16, num_layers=2)
    config.schedule.update(
        batch_size=batch_size,
        eval_batch_size=max(batch_size, 64),
        supervised_steps=supervised,
        adversarial_steps=adversarial,
        log_every=max(1, (supervised + adversarial) // 4),
        eval_every=0,
        checkpoint_every=0,
        keep_checkpoints=1,
    )
    return config


def loop_rates(workdir: str) -> dict:
    """The loop's steps/s per phase, as its last progress line of the phase reports it."""
    import json

    rates = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "steps_per_s" in record:
                rates[record["phase"]] = record["steps_per_s"]
    return rates


def compiled_rate(run, phase: str, count: int) -> tuple[float, float]:
    """(steps/s of the compiled step alone on one batch held on the device, seconds the
    first call took: compilation included)."""
    config = run.config
    start = 0 if phase == "supervised" else config.schedule.supervised_steps
    item = next(train.step_batches(config, run.source, start))
    _, inputs = train.to_devices(run, item)
    step = run.compiled.supervised if phase == "supervised" else run.compiled.adversarial
    if phase == "adversarial":
        run.state = train.take_feature_extractor_if_due(run.state, run.mesh)
    first = time.perf_counter()
    run.state, values = step(run.state, *inputs)
    jax.block_until_ready(values)
    first = time.perf_counter() - first
    times = []
    for _ in range(3):
        begin = time.perf_counter()
        for _ in range(count):
            run.state, values = step(run.state, *inputs)
        jax.block_until_ready(values)
        times.append((time.perf_counter() - begin) / count)
    return 1.0 / statistics.median(times), first


def input_rate(run, phase: str, count: int, on_device: bool) -> float:
    """Images/s the input pipeline delivers alone: host batches, or host batches moved to
    the device and augmented there."""
    config = run.config
    start = 0 if phase == "supervised" else config.schedule.supervised_steps
    per_step = config.schedule.batch_size * (
        1 if phase == "supervised" else train.batches_per_update(config)
    )
    items = train.step_batches(config, run.source, start)
    next(items)
    begin = time.perf_counter()
    done = 0
    for item in items:
        if on_device:
            jax.block_until_ready(train.to_devices(run, item)[1])
        done += 1
        if done == count:
            break
    return done * per_step / (time.perf_counter() - begin)


def peak_memory() -> str:
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return f"{peak / 2**30:.1f} GiB" if peak else "n/a"


def main(argv):
    del argv
    tiny = _TINY.value
    image_size = 16 if tiny else 224
    if _PREPARE.value:
        prepare(_DATA_DIR.value, _IMAGES.value, image_size)
        return
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    runtime.configure_cpu()
    blocked = sys.modules.get("tensorflow", "absent") is None
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="accelerator_check_")
    steps = _STEPS.value
    batches = {"supervised": 16, "adversarial": 16} if tiny else {"supervised": 256,
                                                                  "adversarial": 32}  # fmt: skip
    rows = []
    for phase, batch_size in batches.items():
        supervised, adversarial = (steps, 0) if phase == "supervised" else (1, steps)
        config = check_config(_DATA_DIR.value, batch_size, supervised, adversarial, tiny)
        folder = os.path.join(workdir, phase)
        begin = time.perf_counter()
        train.train_and_evaluate(config, folder)
        wall = time.perf_counter() - begin
        loop = loop_rates(folder).get(phase, float("nan"))
        run = train.Run(config, os.path.join(workdir, phase + "_alone"))
        run.checkpointer.close()
        alone, first = compiled_rate(run, phase, max(3, steps // 4))
        host = input_rate(run, phase, max(3, steps // 4), on_device=False)
        device = input_rate(run, phase, max(3, steps // 4), on_device=True)
        images = batch_size * (1 if phase == "supervised" else train.batches_per_update(config))
        rows.append((phase, batch_size, loop, alone, images, host, device, first, wall))
    loaded = any(m.startswith("tensorflow") and sys.modules[m] for m in list(sys.modules))
    model = "tiny model" if tiny else "ResNet-101, 224 px, bfloat16"
    print(f"\ndevice: {jax.devices()[0].device_kind} x {jax.device_count()}; {model}; "
          f"TensorFlow {'loaded' if loaded else 'not loaded'}"
          f"{' (made unimportable)' if blocked else ''}")  # fmt: skip
    print(
        "| phase | batch | loop steps/s | compiled steps/s | loop / compiled | images a step "
        "| input alone, host (images/s) | input alone, on device (images/s) "
        "| first update (s) | run (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for phase, batch, loop, alone, images, host, device, first, wall in rows:
        print(
            f"| {phase} | {batch} | {loop:.2f} | {alone:.2f} | {loop / alone:.1%} | {images} "
            f"| {host:,.0f} | {device:,.0f} | {first:.1f} | {wall:.0f} |"
        )
    print(f"peak device memory: {peak_memory()}")


if __name__ == "__main__":
    app.run(main)
