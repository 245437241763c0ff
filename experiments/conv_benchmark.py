"""One convolution's forward + backward in XLA:CPU against PyTorch eager, layer by layer.

Every convolution of a torchvision ResNet at the given input size and batch, alone: JAX
(`lax.conv_general_dilated` in NHWC/HWIO as jaxgan's layers call it, jitted, gradients with
respect to input and kernel as the training step needs them; the stem's input gradient is not
needed and not taken) against torch's `conv2d` forward + backward on the same shapes (NCHW,
torch's default). Rounds alternate the two so both see the same load; each cell is the median
over rounds of the mean time per call. This separates what XLA:CPU's convolutions cost from
everything the project's code around them does.

    python experiments/conv_benchmark.py --image_size=112 --batch_size=16 --rounds=5
"""

import argparse
import datetime
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from tables import write_results  # experiments/tables.py

from jaxgan import xla_options

# (name, input's place, in channels, out channels, kernel, stride, padding, count in ResNet-18).
# Places: 0 the image, 1 after the stem and max-pool (layer1), 2-4 after layer2-4's stride 2.
RESNET18_CONVS = (
    ("stem 7x7/2", 0, 3, 64, 7, 2, 3, 1),
    ("layer1 3x3", 1, 64, 64, 3, 1, 1, 4),
    ("layer2 3x3/2", 1, 64, 128, 3, 2, 1, 1),
    ("layer2 1x1/2", 1, 64, 128, 1, 2, 0, 1),
    ("layer2 3x3", 2, 128, 128, 3, 1, 1, 3),
    ("layer3 3x3/2", 2, 128, 256, 3, 2, 1, 1),
    ("layer3 1x1/2", 2, 128, 256, 1, 2, 0, 1),
    ("layer3 3x3", 3, 256, 256, 3, 1, 1, 3),
    ("layer4 3x3/2", 3, 256, 512, 3, 2, 1, 1),
    ("layer4 1x1/2", 3, 256, 512, 1, 2, 0, 1),
    ("layer4 3x3", 4, 512, 512, 3, 1, 1, 3),
)


def _out(side, kernel, stride, pad):
    return (side + 2 * pad - kernel) // stride + 1


def feature_sides(image_size):
    """Spatial side at each place of RESNET18_CONVS for a square input (torch's floor rule)."""
    sides = [image_size, _out(_out(image_size, 7, 2, 3), 3, 2, 1)]
    for _ in range(3):
        sides.append(_out(sides[-1], 3, 2, 1))
    return sides


def jax_conv_step(shape, dtype, compiler_options):
    n, side, cin, cout, k, stride, pad, _ = shape

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def loss(x, w, g):
        return jnp.sum(conv(x, w) * g)

    argnums = (1,) if cin == 3 else (0, 1)
    # value_and_grad: the forward's output is computed too (the gradients alone do not need it
    # for a linear op, and XLA would drop it), as torch computes it.
    grad = jax.jit(
        jax.value_and_grad(loss, argnums=argnums), compiler_options=compiler_options or None
    )
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(n, side, side, cin), dtype)
    w = jnp.asarray(rng.randn(k, k, cin, cout) * 0.05, dtype)
    out_side = _out(side, k, stride, pad)
    g = jnp.asarray(rng.randn(n, out_side, out_side, cout), dtype)
    jax.block_until_ready(grad(x, w, g))
    return lambda: jax.block_until_ready(grad(x, w, g))


def torch_conv_step(shape, dtype):
    n, side, cin, cout, k, stride, pad, _ = shape
    tdtype = torch.float32 if dtype == "float32" else torch.bfloat16
    x = torch.randn(n, cin, side, side, dtype=tdtype, requires_grad=cin != 3)
    w = torch.randn(cout, cin, k, k, dtype=tdtype).mul_(0.05).requires_grad_(True)
    out_side = _out(side, k, stride, pad)
    g = torch.randn(n, cout, out_side, out_side, dtype=tdtype)

    def step():
        x.grad = w.grad = None
        torch.nn.functional.conv2d(x, w, stride=stride, padding=pad).backward(g)

    step()
    return step


def mean_time(call, iters, clock=time.perf_counter):
    start = clock()
    for _ in range(iters):
        call()
    return (clock() - start) / iters


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="calls per side per round")
    parser.add_argument(
        "--xla_options",
        default="project",
        choices=("project", "none"),
        help="project: jaxgan/xla_options.py's compiler options (as training); none: XLA's",
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "process"),
        help="process: this process's CPU seconds (pin it to one core, e.g. `taskset -c 1`)",
    )
    parser.add_argument("--out", default="", help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    sides = feature_sides(args.image_size)
    shapes = [
        (args.batch_size, sides[place], cin, cout, k, s, p, count)
        for _, place, cin, cout, k, s, p, count in RESNET18_CONVS
    ]
    names = [c[0] for c in RESNET18_CONVS]
    jdtype = jnp.float32 if args.dtype == "float32" else jnp.bfloat16
    options = xla_options.compiler_options("cpu") if args.xla_options == "project" else {}
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    steps = [(jax_conv_step(s, jdtype, options), torch_conv_step(s, args.dtype)) for s in shapes]
    loads = [os.getloadavg()[0]]
    times = {name: {"jax": [], "torch": []} for name in names}
    for _ in range(args.rounds):
        for name, (jax_step, torch_step) in zip(names, steps, strict=True):
            times[name]["jax"].append(mean_time(jax_step, args.iters, clock) * 1e3)
            times[name]["torch"].append(mean_time(torch_step, args.iters, clock) * 1e3)
        loads.append(os.getloadavg()[0])
    rows, total_jax, total_torch = [], 0.0, 0.0
    for name, shape in zip(names, shapes, strict=True):
        n, side, cin, cout, k, stride, pad, count = shape
        out_side = _out(side, k, stride, pad)
        macs = n * out_side * out_side * cout * cin * k * k
        gflop = 2 * macs * (2 if cin == 3 else 3) / 1e9  # fwd + weight grad (+ input grad)
        t_jax = statistics.median(times[name]["jax"])
        t_torch = statistics.median(times[name]["torch"])
        total_jax += count * t_jax
        total_torch += count * t_torch
        rows.append(
            f"| {name} | {side}→{out_side}, {cin}→{cout} | {count} | {gflop:.2f} | "
            f"{t_jax:.1f} | {t_torch:.1f} | {t_torch / t_jax:.2f}× | {gflop / t_jax * 1e3:.0f} | "
            f"{gflop / t_torch * 1e3:.0f} |"
        )
    table = "\n".join(
        [
            "`python experiments/conv_benchmark.py " + " ".join(sys.argv[1:]) + "`",
            "",
            f"ResNet-18's convolutions at {args.image_size} px, batch {args.batch_size}, "
            f"{args.dtype}, forward + backward; jax {jax.__version__}, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} cores; "
            f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; median of "
            f"{args.rounds} alternating rounds of {args.iters} calls, {args.clock} clock; XLA "
            f"options {options or 'none'}; 1-minute load average "
            f"{min(loads):.1f}-{max(loads):.1f}.",
            "",
            "| conv | side, channels | per net | GFLOP | XLA ms | torch ms "
            "| XLA speed ÷ torch's | XLA GFLOP/s | torch GFLOP/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"All of ResNet-18's convolutions (each times its count): XLA {total_jax:.0f} ms, "
            f"torch {total_torch:.0f} ms ({total_torch / total_jax:.2f}×).",
        ]
    )
    print(table)
    if args.out:
        write_results(args.out, {"args": vars(args), "loads": loads, "times_ms": times}, table)


if __name__ == "__main__":
    main()
