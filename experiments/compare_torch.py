"""JAX (benchmark.py) against PyTorch eager (torch_reference.py), interleaved in one process.

On a machine shared with other jobs, two runs a minute apart see different loads. This script
builds both implementations once, then alternates them round by round (a few JAX calls, the
same number of PyTorch calls, for each step) so that every round compares the two under the
same load; it reports each side's median over all rounds and the median of the per-round
speed ratios. Same flags as benchmark.py and torch_reference.py, plus --rounds:

    python experiments/compare_torch.py --model=resnet18 --image_size=112 --batch_size=16 \
        --rounds=5 --iters=2 --out=experiments/results/compare_torch_cpu

On a quiet machine the two scripts run one after the other give the official numbers.
"""

import argparse
import datetime
import os
import statistics
import sys
import time

import benchmark
import torch_reference
from conv_benchmark import mean_time
from tables import write_results  # experiments/tables.py

from jaxgan import runtime

STEP_NAMES = ("bce", "adversarial", "critic", "generator")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--num_labels", type=int, default=80)
    parser.add_argument("--steps", default="bce,adversarial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2, help="calls per side per round")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "process"),
        help="process: CPU seconds of this process (robust to other jobs when pinned to one "
        "core, e.g. `taskset -c 1`; counts spinning threads otherwise)",
    )
    parser.add_argument(
        "--cpu_runtime",
        default="project",
        choices=("project", "jax"),
        help="as benchmark.py's (the setting is the process's: PyTorch runs under it too)",
    )
    parser.add_argument("--out", default="")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    shared = [
        f"--model={args.model}",
        f"--image_size={args.image_size}",
        f"--batch_size={args.batch_size}",
        f"--dtype={args.dtype}",
        f"--num_labels={args.num_labels}",
        f"--steps={args.steps}",
    ]
    if args.cpu_runtime == "project":
        runtime.configure_cpu()
    jax_args = benchmark.parse_args(shared)
    torch_args = torch_reference.parse_args(shared)
    load = [os.getloadavg()[0]]
    jax_bench = benchmark.Bench(jax_args)
    reference = torch_reference.Reference(torch_args)
    names = [n for n in STEP_NAMES if n in args.steps.split(",")]
    compiled = {n: jax_bench.compile(n) for n in names}
    for n in names:  # warm both up
        jax_bench.call(compiled[n])
        reference.step(n)()
    times = {n: {"jax": [], "torch": [], "ratio": []} for n in names}
    for r in range(args.rounds):
        for n in names:
            t_jax = mean_time(lambda n=n: jax_bench.call(compiled[n]), args.iters, clock)
            t_torch = mean_time(reference.step(n), args.iters, clock)
            times[n]["jax"].append(t_jax * 1e3)
            times[n]["torch"].append(t_torch * 1e3)
            times[n]["ratio"].append(t_torch / t_jax)
            print(
                f"round {r}: {n} jax {t_jax * 1e3:.0f} ms, torch {t_torch * 1e3:.0f} ms, "
                f"jax speed = {t_torch / t_jax:.2f}x torch's",
                flush=True,
            )
        load.append(os.getloadavg()[0])
    result = {
        "command": "python experiments/compare_torch.py " + " ".join(sys.argv[1:]),
        "args": vars(args),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_processor": benchmark._cpu_name(),
        "host_cpu_cores": os.cpu_count(),
        "load_average_1min_per_round": load,
        "steps": {
            n: {
                "jax_ms_median": statistics.median(t["jax"]),
                "torch_ms_median": statistics.median(t["torch"]),
                "jax_speed_over_torch_median": statistics.median(t["ratio"]),
                "rounds": t,
            }
            for n, t in times.items()
        },
    }
    lines = [
        f"`{result['command']}`",
        "",
        f"{args.model} at {args.image_size} px, batch {args.batch_size}, {args.dtype}; "
        f"{result['host_processor']}, {result['host_cpu_cores']} cores; {result['date']}; "
        f"{args.rounds} rounds of {args.iters} calls per side, {args.clock} clock; "
        f"CPU runtime: {args.cpu_runtime}; "
        f"{torch_reference.torch.get_num_threads()} PyTorch threads; 1-minute load average "
        f"{min(load):.1f}-{max(load):.1f}.",
        "",
        "| step | JAX ms | PyTorch ms | JAX speed ÷ PyTorch's (median of rounds) | per round |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, row in result["steps"].items():
        per_round = ", ".join(f"{x:.2f}" for x in row["rounds"]["ratio"])
        lines.append(
            f"| {n} | {row['jax_ms_median']:.0f} | {row['torch_ms_median']:.0f} "
            f"| {row['jax_speed_over_torch_median']:.2f}× | {per_round} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        write_results(args.out, result, table)


if __name__ == "__main__":
    main()
