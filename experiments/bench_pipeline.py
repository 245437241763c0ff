"""Input-pipeline benchmark: JPEG decode + augmentation, images/s per CPU core, at 224x224.

    python experiments/bench_pipeline.py [--image_dir=DIR] [--cores=1,2] [--seconds=20]

Reads JPEG files (by default it writes 256 COCO-sized ones, 640x480 crops and rescales of
scikit-learn's two sample photographs, quality 90), then for each core count runs, in a
process pinned to that many cores, the tf.data work one training image costs: read the
file, decode the JPEG, the paper's augmentation (jaxgan.data.augment.preprocess_train:
256x256 resize, one of 5 patches x 5 scales, resize to 224, flip, normalise) in a parallel
map on a private thread pool of that size, and batch by 32. The files are cached by the OS
after the first pass, so disk speed is not measured. The evaluation transform (resize only)
is timed the same way. Results go to stdout as a markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def write_jpegs(directory: str, count: int) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(rng.integers(w // 2, w)), int(rng.integers(h // 2, h))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        size = (640, 480) if i % 3 else (480, 640)
        image = photo.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
        image.save(os.path.join(directory, f"{i:04d}.jpg"), quality=90)


def run_pinned(image_dir: str, cores: int, mode: str, seconds: float) -> dict:
    """Runs `measure` in a fresh process pinned to `cores` CPUs (TF reads its threads at start)."""
    args = [sys.executable, __file__, "--_measure", json.dumps([image_dir, cores, mode, seconds])]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(image_dir: str, cores: int, mode: str, seconds: float) -> dict:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import ml_collections
    import tensorflow as tf

    from jaxgan.data import augment

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    config = ml_collections.ConfigDict(
        {"augment": "paper", "image_size": 224, "normalization": "imagenet"}
    )
    files = sorted(tf.io.gfile.glob(os.path.join(image_dir, "*.jp*g")))
    if not files:
        raise SystemExit(f"no .jpg / .jpeg files in {image_dir}")

    def load(index, path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        if mode == "train":
            return augment.preprocess_train(
                image, tf.stack([tf.constant(0, tf.int64), index]), config
            )
        return augment.preprocess_eval(image, config)

    ds = tf.data.Dataset.from_tensor_slices(files).repeat().enumerate()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(2)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.deterministic = True
    iterator = iter(ds.with_options(options))
    for _ in range(10):  # warm up: trace, fill the OS file cache
        next(iterator)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += next(iterator).shape[0]
    rate = images / (time.perf_counter() - start)
    return {"cores": cores, "mode": mode, "images_per_s": rate, "per_core": rate / cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_dir", default=None, help="JPEG files to read (default: generate)")
    parser.add_argument("--cores", default=None, help="comma-separated core counts (default 1,all)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per run")
    parser.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        print(json.dumps(measure(*json.loads(args._measure))))
        return
    available = len(os.sched_getaffinity(0))
    cores = [int(c) for c in args.cores.split(",")] if args.cores else sorted({1, available})
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = args.image_dir or tmp
        if not args.image_dir:
            write_jpegs(tmp, 256)
        print(f"JPEG decode + augmentation to 224x224, {available} cores available "
              f"({os.uname().machine}), {args.seconds:.0f} s per run\n")  # fmt: skip
        print("| transform | cores | images/s | images/s per core |")
        print("| --- | ---: | ---: | ---: |")
        for mode in ("train", "eval"):
            for n in cores:
                r = run_pinned(image_dir, n, mode, args.seconds)
                name = "paper augmentation" if mode == "train" else "eval resize"
                print(f"| {name} | {n} | {r['images_per_s']:.0f} | {r['per_core']:.0f} |")


if __name__ == "__main__":
    main()
