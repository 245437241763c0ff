"""How much the training loop loses against its compiled steps alone.

    python experiments/loop_speed.py [--bce_steps=150] [--adversarial_steps=45] [--log_every=15]

Runs, one after the other, (1) `experiments/benchmark.py` on the embedded config's model,
image size, batch and label count (the trainer's own compiled BCE step and adversarial update
on synthetic batches already on the devices) and (2) the main command on the embedded data
(`python -m jaxgan.main --config=configs/digit_scenes.py` with a short schedule, in a fresh
workdir), then compares the main command's steps/s in each phase (the median of its logged
windows; the loop's rate already leaves out compilation, evaluation and checkpoint time) with
the benchmark's step rate. Prints a markdown table with the 1-minute load average before and
after each run. Set PYTHONPATH=. so this checkout's code is used.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bce_steps", type=int, default=150)
    parser.add_argument("--adversarial_steps", type=int, default=45)
    parser.add_argument("--log_every", type=int, default=15)
    parser.add_argument("--iters", type=int, default=15, help="benchmark calls per step")
    args = parser.parse_args(argv)
    config = runpy.run_path(os.path.join(ROOT, "configs", "digit_scenes.py"))["get_config"]()
    model, size = config.model, config.data.image_size
    batch = config.schedule.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        loads = [os.getloadavg()[0]]
        bench_out = os.path.join(tmp, "bench")
        bench = [sys.executable, "experiments/benchmark.py", f"--model={model.name}",
                 f"--width={model.width}", f"--image_size={size}", f"--batch_size={batch}",
                 "--num_labels=10", "--steps=bce,adversarial", f"--iters={args.iters}",
                 f"--out={bench_out}"]  # fmt: skip
        run(bench)
        loads.append(os.getloadavg()[0])
        workdir = os.path.join(tmp, "run")
        train = [sys.executable, "-m", "jaxgan.main", "--config=configs/digit_scenes.py",
                 f"--workdir={workdir}", f"--config.schedule.bce_steps={args.bce_steps}",
                 f"--config.schedule.adversarial_steps={args.adversarial_steps}",
                 f"--config.schedule.log_every={args.log_every}",
                 "--config.schedule.eval_every=0",
                 "--config.schedule.checkpoint_every=50"]  # fmt: skip
        run(train)
        loads.append(os.getloadavg()[0])
        with open(bench_out + ".json") as f:
            steps = json.load(f)["steps"]
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
    print(f"`{' '.join(bench[1:])}`\n")
    print(f"`{' '.join(train[1:])}` (workdir: a fresh temporary folder)\n")
    print(
        f"1-minute load average: {loads[0]:.1f} before the benchmark, {loads[1]:.1f} between, "
        f"{loads[2]:.1f} after the main command.\n"
    )
    print("| phase | benchmark step ms | benchmark steps/s | main command steps/s | loss |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for phase, name in (("supervised", "bce"), ("adversarial", "adversarial")):
        rates = [r.get("steps_per_s") for r in records if r.get("phase") == phase]
        rates = [r for r in rates if r is not None]
        loop = statistics.median(rates)
        ms = steps[name]["ms_median"]
        print(
            f"| {phase} | {ms:.1f} | {1e3 / ms:.2f} | {loop:.2f} "
            f"(median of {len(rates)} windows) | {1 - loop * ms / 1e3:+.1%} |"
        )


if __name__ == "__main__":
    main()
