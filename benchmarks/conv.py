"""Each convolution of ResNet-18 in XLA:CPU against PyTorch eager, part by part, and the same
work as a plain matrix product.

Every convolution of a torchvision ResNet-18 at the given input size and batch, alone, split
into the three computations a training step makes of it: the forward, the input's gradient
(not taken for the stem: the step needs no gradient of the image) and the kernel's gradient.
JAX runs `lax.conv_general_dilated` in NHWC/HWIO as jaxgan's layers call it, each part jitted
on its own with the project's compiler options; torch runs `conv2d` and the two backward
functions its autograd calls, in NCHW. A fourth column times the forward's FLOPs as one
matrix product (`jnp.dot` against `torch.mm`) and one large product closes the table: where
even the plain GEMM is slower in XLA, the gap is in XLA:CPU's kernels, not in how the project
calls them. Rounds alternate the two libraries so both see the same load; each cell is the
median over rounds of the mean time per call, each timed block after a pause and an untimed
call (`mean_time`).

    python benchmarks/conv.py --image_size=112 --batch_size=16 --rounds=7 --iters=3 \
        --out=benchmarks/results/conv_parts_cpu
"""

import datetime
import functools
import os
import statistics

import cli  # benchmarks/cli.py
import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxgan import runtime

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


CONV_PARTS = ("forward", "input grad", "kernel grad")  # what a training step computes
PARTS = (*CONV_PARTS, "GEMM")


def _gemm_of(shape):
    """The forward convolution as one matrix product, (batch x output pixels, window) @ (window,
    out channels): the same FLOPs with no convolution code involved."""
    n, side, cin, cout, k, stride, pad, _ = shape
    out_side = _out(side, k, stride, pad)
    return n * out_side * out_side, k * k * cin, cout


def _blocking(f, *args):
    jax.block_until_ready(f(*args))  # compile and run once
    return lambda: jax.block_until_ready(f(*args))


def jax_gemm(gemm, dtype, compiler_options):
    m, depth, cols = gemm
    rng = np.random.RandomState(0)
    a, b = (jnp.asarray(rng.randn(*s), dtype) for s in ((m, depth), (depth, cols)))
    return _blocking(jax.jit(jnp.dot, compiler_options=compiler_options or None), a, b)


def torch_gemm(gemm, dtype):
    m, depth, cols = gemm
    a, b = torch.randn(m, depth, dtype=dtype), torch.randn(depth, cols, dtype=dtype)
    return lambda: torch.mm(a, b)


def jax_conv_parts(shape, dtype, compiler_options):
    """Part name -> a call of the jitted part that blocks until its result is ready."""
    n, side, cin, cout, k, stride, pad, _ = shape
    out_side = _out(side, k, stride, pad)

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(n, side, side, cin), dtype)
    w = jnp.asarray(rng.randn(k, k, cin, cout) * 0.05, dtype)
    g = jnp.asarray(rng.randn(n, out_side, out_side, cout), dtype)
    jit = functools.partial(jax.jit, compiler_options=compiler_options or None)
    return {
        "forward": _blocking(jit(conv), x, w),
        "input grad": _blocking(jit(lambda w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]), w, g),
        "kernel grad": _blocking(jit(lambda x, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]), x, g),
        "GEMM": jax_gemm(_gemm_of(shape), dtype, compiler_options),
    }


def torch_conv_parts(shape, dtype):
    """The same parts in torch: what autograd calls for conv2d's backward, one gradient each."""
    n, side, cin, cout, k, stride, pad, _ = shape
    out_side = _out(side, k, stride, pad)
    x = torch.randn(n, cin, side, side, dtype=dtype)
    w = torch.randn(cout, cin, k, k, dtype=dtype).mul_(0.05)
    g = torch.randn(n, cout, out_side, out_side, dtype=dtype)
    grad = torch.nn.grad
    return {
        "forward": lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad),
        "input grad": lambda: grad.conv2d_input(x.shape, w, g, stride=stride, padding=pad),
        "kernel grad": lambda: grad.conv2d_weight(x, w.shape, g, stride=stride, padding=pad),
        "GEMM": torch_gemm(_gemm_of(shape), dtype),
    }


def _versus(jax_ms, torch_ms):
    return f"{jax_ms:.0f} / {torch_ms:.0f} ({torch_ms / jax_ms:.2f}×)"


def parse_args(argv=None):
    parser = cli.parser(
        __doc__,
        ("image_size", "batch_size", "dtype", "iters", "rounds", "out", "cpu_runtime"),
        iters=3,
    )
    parser.add_argument(
        "--big_gemm", type=int, default=2048, help="side of the closing square GEMM; 0: none"
    )
    parser.add_argument(
        "--xla_options",
        default="project",
        choices=("project", "none"),
        help="project: jaxgan/runtime.py's compiler options (as training); none: XLA's",
    )
    cli.add_clock_flag(parser)
    args = parser.parse_args(argv)
    if args.dtype not in ("float32", "bfloat16"):
        parser.error(f"--dtype={args.dtype}: choose float32 or bfloat16")
    cli.check_positive(parser, args, ("image_size", "batch_size", "iters", "rounds"))
    if args.big_gemm < 0:
        parser.error(f"--big_gemm must be >= 0, got {args.big_gemm}")
    return args


def main(argv=None):
    args = parse_args(argv)
    cli.configure_runtime(args)
    sides = feature_sides(args.image_size)
    shapes = [
        (args.batch_size, sides[place], cin, cout, k, s, p, count)
        for _, place, cin, cout, k, s, p, count in RESNET18_CONVS
    ]
    names = [c[0] for c in RESNET18_CONVS]
    jdtype = jnp.float32 if args.dtype == "float32" else jnp.bfloat16
    tdtype = torch.float32 if args.dtype == "float32" else torch.bfloat16
    options = runtime.compiler_options("cpu") if args.xla_options == "project" else {}
    clock = cli.clock(args.clock)
    libs = {"jax": [], "torch": []}
    for shape in shapes:
        libs["jax"].append(jax_conv_parts(shape, jdtype, options))
        libs["torch"].append(torch_conv_parts(shape, tdtype))
    loads = [cli.load_average()]
    times = {name: {lib: {p: [] for p in PARTS} for lib in libs} for name in names}
    for _ in range(args.rounds):
        for i, name in enumerate(names):
            for part in PARTS:
                for lib, calls in libs.items():
                    times[name][lib][part].append(
                        cli.mean_time(calls[i][part], args.iters, clock) * 1e3
                    )
        loads.append(cli.load_average())
    big = {}
    if args.big_gemm:
        side = args.big_gemm
        big_calls = {
            "jax": jax_gemm((side,) * 3, jdtype, options),
            "torch": torch_gemm((side,) * 3, tdtype),
        }
        big = {
            lib: 2
            * side**3
            / 1e9
            / statistics.median(cli.mean_time(call, 1, clock) for _ in range(5))
            for lib, call in big_calls.items()
        }
    medians = {
        name: {
            lib: {p: statistics.median(t) for p, t in by_part.items()} for lib, by_part in d.items()
        }
        for name, d in times.items()
    }
    totals = {lib: dict.fromkeys(CONV_PARTS, 0.0) for lib in libs}
    rows = []
    for name, shape in zip(names, shapes, strict=True):
        _, side, cin, cout, *_, count = shape
        out_side = _out(side, *shape[4:7])
        m, depth, cols = _gemm_of(shape)
        jx, tc = medians[name]["jax"], medians[name]["torch"]
        cells = []
        for part in CONV_PARTS:
            if part == "input grad" and cin == 3:  # the step needs no gradient of the image
                cells.append("—")
                continue
            for lib in libs:
                totals[lib][part] += count * medians[name][lib][part]
            cells.append(f"{jx[part]:.1f} / {tc[part]:.1f}")
        gflop = 2 * m * depth * cols / 1e9
        cells.append(f"{gflop / jx['GEMM'] * 1e3:.0f} / {gflop / tc['GEMM'] * 1e3:.0f}")
        rows.append(
            f"| {name} | {side}→{out_side}, {cin}→{cout} | {count} | " + " | ".join(cells) + " |"
        )
    total_cells = [_versus(totals["jax"][p], totals["torch"][p]) for p in CONV_PARTS]
    all_jax, all_torch = sum(totals["jax"].values()), sum(totals["torch"].values())
    table = "\n".join(
        [
            f"`{cli.command()}`",
            "",
            f"ResNet-18's convolutions at {args.image_size} px, batch {args.batch_size}, "
            f"{args.dtype}, each part alone; jax {jax.__version__}, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} cores; "
            f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; median of "
            f"{args.rounds} alternating rounds of {args.iters} calls, {args.clock} clock; XLA "
            f"options {options or 'none'}; CPU runtime: {args.cpu_runtime}; 1-minute load average "
            f"{min(loads):.1f}-{max(loads):.1f}. Cells: XLA / torch.",
            "",
            "| conv | side, channels | per net | forward ms | input grad ms | kernel grad ms "
            "| its forward as one GEMM, GFLOP/s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "| all (times the count) | | | " + " | ".join(total_cells) + " | |",
            "",
            f"All of ResNet-18's convolution work in a training step: XLA {all_jax:.0f} ms, "
            f"torch {all_torch:.0f} ms (XLA at {all_torch / all_jax:.2f}× torch's speed).",
        ]
    )
    if big:
        table += (
            f"\nOne large GEMM alone ({args.big_gemm}³): XLA {big['jax']:.0f} GFLOP/s, torch "
            f"{big['torch']:.0f} GFLOP/s."
        )
    print(table)
    if args.out:
        cli.write_results(
            args.out,
            {
                "command": cli.command(),
                "args": vars(args),
                "loads": loads,
                "times_ms": times,
                "big_gemm_gflops": big,
            },
            table,
        )


if __name__ == "__main__":
    main()
