"""The input's cost: decode + augmentation per core, the stream's CPU time, the loop's stall.

--mode=pipeline: JPEG decode + augmentation, images/s per CPU core. Reads JPEG files (by
default it writes --num_images COCO-sized ones, 640x480 crops and rescales of scikit-learn's
two sample photographs, quality 90), then for each core count runs, in a process pinned to
that many cores, the host work one image costs when a dataset is prepared: decode the JPEG
and resize it to the prepared square (PIL, a thread pool of that size). Training itself then
reads records and decodes nothing; the augmentation runs on the devices.

    python benchmarks/input.py --mode=pipeline [--image_dir=DIR] [--cores=1,2] [--seconds=20]

--mode=cpu: the CPU time the training stream costs per batch, what the input takes from the
step's cores. Builds the config's training stream (`input_pipeline.train_dataset`: this
process's rows of each global batch, read by Grain), pulls --warmup batches, then times
--iters more and reports the process CPU time (user + system, every thread) and the wall time
per batch; then the CPU time the device augmentation of as many batches costs when the device
is this CPU. CPU time, unlike wall time, barely depends
on what else the machine runs, so it can be compared across runs; on a host where the input
shares the cores with the step (a CPU), it is what the loop loses.

    python benchmarks/input.py --mode=cpu [--config=configs/digit_scenes.py] [--iters=250] \
        [--config.data.cache_decoded=False ...]

--mode=stall: what feeding real batches costs the compiled steps, inside one process. Builds
the run once (`train.Run`: the trainer's own compiled steps, state and input stream) and
alternates, for each phase, windows of --iters steps fed the way the training loop feeds them
(`train.step_batches` through `parallel.DevicePrefetch`) with windows of the same compiled step
on one batch held on the devices (no input work at all), --rounds windows of each kind. Both
kinds of window see the same process, threads and machine state, so the ratio of their median
step times is what the input costs the loop (two processes run one after the other drift
apart by a fifth on a shared machine). Logging, evaluation and checkpoints are not included
(the loop leaves them out of its rate).

    python benchmarks/input.py --mode=stall [--config=configs/digit_scenes.py] [--iters=10] \
        [--rounds=12] [--phase=both]

--config (a config file, `path[:variant]`) and its overrides (`--config.FIELD=VALUE`, as the
main command takes them) apply to the cpu and stall modes; --image_size and --batch_size
override the config's `data.image_size` and `schedule.batch_size` there when given. The CPU
runtime (--cpu_runtime) applies to them too: the main command runs the stream and the steps
under it. The pipeline mode's pinned processes run TensorFlow alone.
"""

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import cli  # benchmarks/cli.py

MODES = ("pipeline", "cpu", "stall")
DEFAULTS = {
    "pipeline": {"image_size": 224, "batch_size": 32},
    "cpu": {"iters": 250},
    "stall": {"iters": 10, "rounds": 12},
}
DEFAULT_CONFIG = os.path.join(cli.ROOT, "configs", "digit_scenes.py")


def parse_args(argv=None):
    parser = cli.parser(
        __doc__,
        ("image_size", "batch_size", "iters", "rounds", "out", "cpu_runtime"),
        image_size=None,
        batch_size=None,
        iters=None,
        rounds=None,
    )
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="cpu, stall: the config file")
    parser.add_argument("--image_dir", default=None, help="pipeline: JPEGs to read (default: made)")
    parser.add_argument("--num_images", type=int, default=256, help="pipeline: JPEGs to make")
    parser.add_argument("--cores", default=None, help="pipeline: core counts (default 1,all)")
    parser.add_argument("--seconds", type=float, default=20.0, help="pipeline: timed s per run")
    parser.add_argument("--warmup", type=int, default=10, help="cpu: batches pulled first")
    parser.add_argument(
        "--phase",
        default="both",
        choices=("both", "supervised", "adversarial"),
        help="stall: which phases",
    )
    parser.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if a.startswith("--config.")]
    if len(overrides) != len(rest):
        parser.error(f"unrecognized arguments: {' '.join(a for a in rest if a not in overrides)}")
    if overrides and args.mode == "pipeline":
        parser.error("--config overrides apply to --mode=cpu and --mode=stall")
    args.config_overrides = overrides
    cli.fill_defaults(args, DEFAULTS[args.mode])
    cli.check_positive(parser, args, ("image_size", "batch_size", "iters", "rounds", "num_images"))
    if args.warmup < 0 or args.seconds <= 0:
        parser.error("--warmup must be >= 0 and --seconds > 0")
    return args


def load_config(args):
    """The config file with its `--config.FIELD=VALUE` overrides, parsed as the main command
    parses them (ml_collections' config flags), then --image_size and --batch_size."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["input.py", f"--config={args.config}", *args.config_overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "Config file.", flag_values=values, sys_argv=argv
    )
    try:
        values(argv)
        config = values.config
        config.keys()  # a config that failed to load raises here, not at first use
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as error:
        message = " ".join(str(error).split())
        raise SystemExit(f"error: --config={args.config}: {message}") from None
    if args.image_size is not None:
        config.data.image_size = args.image_size
    if args.batch_size is not None:
        config.schedule.batch_size = args.batch_size
    return config


# --mode=pipeline


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


def run_pinned(job: dict) -> list[dict]:
    """Runs `measure` in a fresh process pinned to `job['cores']` CPUs (TensorFlow reads its
    thread counts when it starts)."""
    command = [sys.executable, __file__, "--mode=pipeline", "--_measure", json.dumps(job)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(job: dict) -> list[dict]:
    """The host's per-image work on `job['cores']` cores, in a thread pool of that size:
    "prepare" (PIL decodes the JPEG and resizes it to the prepared square, once per image
    when a dataset is prepared). Training's host work per image is a record read: the
    augmentation runs on the devices (`jaxgan.data.augment`)."""
    import concurrent.futures
    import glob

    from jaxgan.data import augment, image_files

    cores = job["cores"]
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    files = sorted(glob.glob(os.path.join(job["image_dir"], "*.jp*g")))
    if not files:
        raise SystemExit(f"no .jpg / .jpeg files in {job['image_dir']}")
    data = [open(f, "rb").read() for f in files]
    side = augment.frame_side(job["image_size"])
    with concurrent.futures.ThreadPoolExecutor(cores) as pool:
        list(pool.map(lambda d: image_files.stored_square(d, side), data[:10]))  # warm up
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < job["seconds"]:
            list(pool.map(lambda d: image_files.stored_square(d, side), data))
            images += len(data)
        rate = images / (time.perf_counter() - start)
    return [{"cores": cores, "mode": "prepare", "images_per_s": rate, "per_core": rate / cores}]


def pipeline(args) -> tuple[dict, list[str]]:
    available = len(os.sched_getaffinity(0))
    cores = [int(c) for c in args.cores.split(",")] if args.cores else sorted({1, available})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = args.image_dir or tmp
        if not args.image_dir:
            write_jpegs(tmp, args.num_images)
        for n in cores:
            job = {
                "image_dir": image_dir,
                "cores": n,
                "seconds": args.seconds,
                "image_size": args.image_size,
                "batch_size": args.batch_size,
            }
            for row in run_pinned(job):
                rows.append(row)
                print(f"{row['mode']}, {n} core(s): {row['images_per_s']:.0f} images/s", flush=True)
    rows.sort(key=lambda r: (r["mode"] != "train", r["cores"]))
    lines = [
        f"JPEG decode + square resize for {args.image_size} px models (PIL, threads), "
        f"{available} cores available ({cli.cpu_name()}), "
        f"{args.seconds:g} s per run.",
        "",
        "| transform | cores | images/s | images/s per core |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        name = "decode + square resize (preparation)"
        lines.append(f"| {name} | {r['cores']} | {r['images_per_s']:.0f} | {r['per_core']:.0f} |")
    return {"rows": rows}, lines


# --mode=cpu


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stream_cpu(args) -> tuple[dict, list[str]]:
    from jaxgan.data import input_pipeline
    from jaxgan.data.datasets import get_source

    config = load_config(args)
    source = get_source(config.data)
    batches = input_pipeline.train_batches(
        source, config.data, config.schedule.batch_size, config.seed
    )
    for _ in range(args.warmup):
        next(batches)
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(args.iters):
        next(batches)
    count = args.iters
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    # The device's share on a CPU host: the augmentation of the same batches, timed alone.
    import jax

    from jaxgan.data import augment

    transform = augment.Transform.from_config(config.data)
    held = next(batches)
    jax.block_until_ready(augment.train_batch(held, transform, config.seed))
    device_cpu = cpu_seconds()
    for _ in range(args.iters):
        jax.block_until_ready(augment.train_batch(next(batches), transform, config.seed))
    device_cpu = cpu_seconds() - device_cpu - cpu  # minus the host reads, measured above
    row = {
        "dataset": config.data.name,
        "batch_size": config.schedule.batch_size,
        "image_size": config.data.image_size,
        "augment": config.data.augment,
        "batches": count,
        "cpu_ms_per_batch": cpu / count * 1e3,
        "augment_cpu_ms_per_batch": device_cpu / count * 1e3,
        "wall_ms_per_batch": wall / count * 1e3,
    }
    lines = [
        f"{row['dataset']}, batch {row['batch_size']}, {row['image_size']} px, "
        f"augment={row['augment']}: host stream {row['cpu_ms_per_batch']:.2f} ms of CPU and "
        f"{row['wall_ms_per_batch']:.2f} ms of wall time per batch; the augmentation on the "
        f"(CPU) device {row['augment_cpu_ms_per_batch']:.2f} ms of CPU per batch ({count} "
        f"batches after {args.warmup} untimed)."
    ]
    return row, lines


# --mode=stall


def timed_window(step_fn, state, inputs, count: int):
    """(state, seconds) for `count` steps on `inputs()`, synchronised at both ends."""
    import jax

    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(count):
        state, values = step_fn(state, *inputs())
    jax.block_until_ready((state, values))
    return state, time.perf_counter() - start


def measure_stall(run, phase: str, window: int, windows: int) -> dict:
    from jaxgan import parallel, train

    config = run.config
    if phase == "supervised":
        step_fn, start = run.compiled.supervised, 0
    else:
        step_fn, start = run.compiled.adversarial, config.schedule.supervised_steps
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
    return {
        "phase": phase,
        "real_ms": real_ms,
        "held_ms": held_ms,
        "loss": 1 - held_ms / real_ms,
        "windows_ms": {k: [t * 1e3 for t in v] for k, v in times.items()},
    }


def stall(args) -> tuple[dict, list[str]]:
    import jax

    from jaxgan import train
    from jaxgan.choices import ConfigError
    from jaxgan.config_check import check_config

    config = load_config(args)
    schedule = config.schedule
    needed = 2 * (args.rounds + 2) * args.iters  # steps the stream must hold
    schedule.supervised_steps = max(schedule.supervised_steps, needed)
    schedule.adversarial_steps = max(schedule.adversarial_steps, needed)
    phases = ("supervised", "adversarial") if args.phase == "both" else (args.phase,)
    try:
        check_config(config)  # train.Run trusts a checked config, as the main command has it
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    with tempfile.TemporaryDirectory() as workdir:
        run = train.Run(config, workdir)
        rows = []
        for phase in phases:
            rows.append(measure_stall(run, phase, args.iters, args.rounds))
            print(f"{phase}: input costs {rows[-1]['loss']:+.1%}", flush=True)
    lines = [
        f"{config.model.name}, {config.data.name}, {config.data.image_size} px, batch "
        f"{schedule.batch_size}, {jax.device_count()} device(s); {args.rounds} alternated "
        f"windows of {args.iters} steps of each kind; ms per step, median over windows; "
        "loss = 1 − held ÷ real.",
        "",
        "| phase | real batches, ms per step | held batch, ms per step | loss |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['phase']} | {row['real_ms']:.1f} | {row['held_ms']:.1f} | {row['loss']:+.1%} |"
        )
    return {"phases": rows}, lines


def main(argv=None):
    args = parse_args(argv)
    if args._measure:  # a pinned child of --mode=pipeline
        print(json.dumps(measure(json.loads(args._measure))))
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.mode != "pipeline":  # the stream and the steps run here, as in training
        cli.configure_runtime(args)
    load_start = cli.load_average()
    result, lines = {"pipeline": pipeline, "cpu": stream_cpu, "stall": stall}[args.mode](args)
    result = {
        "command": cli.command(),
        "args": vars(args),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_1min": {"start": load_start, "end": cli.load_average()},
        **result,
    }
    load = result["load_average_1min"]
    runtime_note = "" if args.mode == "pipeline" else f"CPU runtime: {args.cpu_runtime}; "
    table = "\n".join(
        [
            f"`{result['command']}`",
            "",
            *lines,
            "",
            f"{result['date']}; {runtime_note}1-minute load average "
            f"{load['start']:.1f} at the start, {load['end']:.1f} at the end.",
        ]
    )
    return cli.report(args.out, result, table)


if __name__ == "__main__":
    main()
