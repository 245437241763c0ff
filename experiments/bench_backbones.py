"""Forward+backward time per image of each backbone, float32 and bfloat16, on this machine.

One training step of the generator's supervised phase without the optimiser: train-mode forward
(BatchNorm batch statistics, dropout), sigmoid cross-entropy against random labels, gradient
with respect to every parameter. Batch 8 at the input size each backbone's ImageNet weights
expect (`jaxgan.models.GENERATORS`).

    python experiments/bench_backbones.py --out=experiments/bench_backbones.md

The first call (compilation included) is reported apart; the time per image is the median over
`--iters` timed steps divided by the batch size.
"""

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxgan.models import DTYPES, GENERATORS, build_generator


def bench(arch, dtype_name, batch, iters, num_labels=80):
    size = GENERATORS[arch].image_size
    model = build_generator(arch, num_labels, dtype=DTYPES[dtype_name])
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, size, size, 3), jnp.float32)
    labels = (jax.random.uniform(jax.random.key(1), (batch, num_labels)) < 0.05).astype(jnp.float32)
    variables = jax.jit(lambda x: model.init(key, x, train=False))(x[:1])

    def loss(params, batch_stats, x, labels, dropout_key):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
        )
        return optax.sigmoid_binary_cross_entropy(logits, labels).mean(), updates

    step = jax.jit(jax.grad(loss, has_aux=True))
    args = (variables["params"], variables.get("batch_stats", {}), x, labels, jax.random.key(2))
    start = time.perf_counter()
    jax.block_until_ready(step(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(step(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times) / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="vgg16,inception_v3,resnet101,resnet152")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--out", default="", help="markdown file to write the table to")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    rows = []
    for arch in args.archs.split(","):
        for dtype_name in args.dtypes.split(","):
            first, per_image = bench(arch, dtype_name, args.batch, args.iters)
            row = (
                f"| {arch} | {GENERATORS[arch].image_size} | {dtype_name} | {per_image * 1000:.0f} "
                f"| {per_image * args.batch:.2f} | {first:.1f} |"
            )
            print(row, flush=True)
            rows.append(row)
    header = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}, "
        f"median of {args.iters} timed steps after one untimed; 1-minute load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other jobs on "
        "the same cores inflate the times).\n\n"
        "| backbone | input | compute dtype | fwd+bwd ms / image | s / step | first call s |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    )
    table = header + "\n".join(rows) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(
                "# Backbone forward+backward time\n\n"
                "`python experiments/bench_backbones.py --out=experiments/bench_backbones.md`\n\n"
                + table
            )
    print(table)


if __name__ == "__main__":
    main()
