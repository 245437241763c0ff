"""What the speed benchmarks share: their common flags, their results files, their timer.

Each benchmark is a script run from the repository root (`python benchmarks/steps.py ...`);
Python puts its folder first on the module path, so the scripts import this module (and each
other) by name. This module imports neither JAX nor PyTorch: PyTorch's baseline runs without
JAX.
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (type, default, help). A script picks the ones it takes and may change a default;
# a default of None means the script fills it in per mode (see `fill_defaults`).
FLAGS = {
    "model": (str, "resnet18", "backbone (jaxgan.models.GENERATORS)"),
    "image_size": (int, 112, "input side, pixels"),
    "batch_size": (int, 16, "global batch"),
    "dtype": (str, "float32", "compute dtype: float32 or bfloat16"),
    "iters": (int, 5, "timed calls (per side and round where there are rounds)"),
    "rounds": (int, 5, "alternated rounds"),
    "out": (str, "", "write <out>.json (the numbers) and <out>.md (the table)"),
}
CPU_RUNTIME_HELP = (
    "project: on a CPU, steps keep their buffers between calls, as training runs them "
    "(jaxgan/runtime.py configure_cpu); jax: JAX's and glibc's defaults"
)


def parser(doc: str, flags, **defaults) -> argparse.ArgumentParser:
    """A parser described by `doc`'s first line with the shared `flags` (names of FLAGS, and
    "cpu_runtime"); `defaults` replace the shared defaults (None: filled in per mode)."""
    unknown = set(defaults) - set(flags)
    if unknown:
        raise ValueError(f"defaults for flags not taken: {sorted(unknown)}")
    result = argparse.ArgumentParser(description=doc.strip().split("\n")[0], allow_abbrev=False)
    for name in flags:
        if name == "cpu_runtime":
            result.add_argument(
                "--cpu_runtime",
                default=defaults.get(name, "project"),
                choices=("project", "jax"),
                help=CPU_RUNTIME_HELP,
            )
            continue
        kind, default, help_text = FLAGS[name]
        result.add_argument(
            f"--{name}", type=kind, default=defaults.get(name, default), help=help_text
        )
    return result


def fill_defaults(args: argparse.Namespace, defaults: dict) -> None:
    """Sets each flag left at None to its default for the mode the command chose."""
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def check_positive(parser: argparse.ArgumentParser, args, names) -> None:
    """One line for each of `names` below 1."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")


def configure_runtime(args) -> None:
    """The project's CPU runtime (`runtime.configure_cpu`) unless --cpu_runtime=jax; before
    anything runs on JAX."""
    if args.cpu_runtime == "project":
        from jaxgan import runtime

        runtime.configure_cpu()


def command() -> str:
    """The command line that ran this script, from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(["python", script, *sys.argv[1:]])


def report(out: str | None, result: dict, table: str) -> dict:
    """Prints `table` and, with `out`, writes both files (`write_results`); returns `result`."""
    print(table)
    if out:
        write_results(out, result, table)
    return result


def write_results(out: str, result: dict, table: str) -> None:
    """`<out>.json` (the numbers) and `<out>.md` (the table), creating the folder."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(out + ".md", "w") as f:
        f.write(table if table.endswith("\n") else table + "\n")


def clock(name: str):
    """wall: time.perf_counter; process: this process's CPU seconds."""
    return time.perf_counter if name == "wall" else time.process_time


def add_clock_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "process"),
        help="process: CPU seconds of this process (robust to other jobs when pinned to one "
        "core, e.g. `taskset -c 1`; counts spinning threads otherwise)",
    )


def mean_time(call, iters: int, clock=time.perf_counter) -> float:
    """Mean time of `iters` calls after a pause and one untimed call. JAX's and PyTorch's
    worker threads spin for milliseconds after their last task (libgomp's default spin count,
    Eigen's pool): a call of a few milliseconds right after the other library's would share
    the cores with those spinning threads. The pause lets them sleep; the untimed call warms
    the caches."""
    time.sleep(0.05)
    call()
    start = clock()
    for _ in range(iters):
        call()
    return (clock() - start) / iters


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
