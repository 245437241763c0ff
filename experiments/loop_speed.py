"""How much the training loop loses against its compiled steps alone.

    python experiments/loop_speed.py [--supervised_steps=150] [--adversarial_steps=45]
        [--log_every=15] [--rounds=1]

Runs, one after the other, (1) `experiments/benchmark.py` on the embedded config's model,
image size, batch and label count (the trainer's own compiled BCE step and adversarial update
on synthetic batches already on the devices) and (2) the main command on the embedded data
(`python -m jaxgan.main --config=configs/digit_scenes.py` with a short schedule, in a fresh
workdir), then compares the main command's steps/s in each phase (the median of its logged
windows; the loop's rate already leaves out compilation, evaluation and checkpoint time) with
the benchmark's step rate. With `--rounds=N` the pair runs N times, alternating, and the
table has a row per round and phase plus the median loss: on a machine whose speed drifts
between runs, one pair of separately timed processes is a noisy ratio. Prints markdown with
the 1-minute load average around each run. Set PYTHONPATH=. so this checkout's code is used.
"""

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run(args, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def measure_round(args, config, tmp: str) -> tuple[list[list[str]], list[float], dict, dict]:
    """One benchmark run, then one main-command run: (commands, load averages, benchmark
    steps, {phase: the main command's logged steps/s})."""
    model, size = config.model, config.data.image_size
    loads = [os.getloadavg()[0]]
    bench_out = os.path.join(tmp, "bench")
    bench = [sys.executable, "experiments/benchmark.py", f"--model={model.name}",
             f"--width={model.width}", f"--image_size={size}",
             f"--batch_size={config.schedule.batch_size}", "--num_labels=10",
             "--steps=bce,adversarial", f"--iters={args.iters}", f"--out={bench_out}"]  # fmt: skip
    run(bench)
    loads.append(os.getloadavg()[0])
    workdir = os.path.join(tmp, "run")
    train = [sys.executable, "-m", "jaxgan.main", "--config=configs/digit_scenes.py",
             f"--workdir={workdir}", f"--config.schedule.supervised_steps={args.supervised_steps}",
             f"--config.schedule.adversarial_steps={args.adversarial_steps}",
             f"--config.schedule.log_every={args.log_every}",
             "--config.schedule.eval_every=0",
             "--config.schedule.checkpoint_every=50"]  # fmt: skip
    run(train)
    loads.append(os.getloadavg()[0])
    with open(bench_out + ".json") as f:
        steps = json.load(f)["steps"]
    rates = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for record in map(json.loads, f):
            if record.get("steps_per_s") is not None:
                rates.setdefault(record["phase"], []).append(record["steps_per_s"])
    return [bench[1:], train[1:]], loads, steps, rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--supervised_steps", type=int, default=150)
    parser.add_argument("--adversarial_steps", type=int, default=45)
    parser.add_argument("--log_every", type=int, default=15)
    parser.add_argument("--iters", type=int, default=15, help="benchmark calls per step")
    parser.add_argument("--rounds", type=int, default=1, help="benchmark/main pairs, alternated")
    args = parser.parse_args(argv)
    config = runpy.run_path(os.path.join(ROOT, "configs", "digit_scenes.py"))["get_config"]()
    rows, losses = [], {"supervised": [], "adversarial": []}
    for round_index in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            commands, loads, steps, rates = measure_round(args, config, tmp)
        if round_index == 0:
            for command in commands:
                print(f"`{' '.join(command)}` (workdir: a fresh temporary folder)\n")
        for phase, name in (("supervised", "bce"), ("adversarial", "adversarial")):
            loop, ms = statistics.median(rates[phase]), steps[name]["ms_median"]
            losses[phase].append(1 - loop * ms / 1e3)
            rows.append(
                f"| {round_index + 1} | {phase} | {loads[0]:.1f} / {loads[1]:.1f} / "
                f"{loads[2]:.1f} | {ms:.1f} | {1e3 / ms:.2f} | {loop:.2f} (median of "
                f"{len(rates[phase])} windows) | {losses[phase][-1]:+.1%} |"
            )
    print("| round | phase | load before / between / after | benchmark step ms | "
          "benchmark steps/s | main command steps/s | loss |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print()
    for phase, values in losses.items():
        print(f"{phase}: median loss {statistics.median(values):+.1%} over {len(values)} round(s)")


if __name__ == "__main__":
    main()
