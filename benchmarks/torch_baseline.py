"""The same training steps in PyTorch eager, to compare `benchmarks/steps.py` against.

What a PyTorch user would write for the method (docs/method.md), timed the same way on the same
synthetic data shapes: the BCE step (train-mode forward, BCE summed over labels and averaged
over images, backward, Adam), one critic update (ŷ from G in train mode without gradient,
f_ext features of three batches, Eq. 4 with the gradient penalty through autograd with
create_graph, Adam), one generator update (Eq. 2, the critic's parameters not differentiated,
Adam), and the adversarial update (n_critic critic updates on fresh batches, then the
generator update). torchvision's networks with an 80-way output layer, NCHW (torch's default
layout), float32 or bfloat16 autocast. Takes steps.py's flags:

    python benchmarks/torch_baseline.py --model=resnet18 --image_size=112 --batch_size=16 \
        --out=benchmarks/results/torch_reference_resnet18_cpu

With --interleaved, JAX (steps.py's compiled steps) against PyTorch in one process. On a
machine shared with other jobs, two runs a minute apart see different loads: this mode builds
both implementations once, then alternates them round by round (--iters calls of JAX, the same
number of PyTorch calls, for each step) so that every round compares the two under the same
load; it reports each side's median over all rounds and the median of the per-round speed
ratios. The CPU runtime (--cpu_runtime) is the process's: PyTorch runs under it too.

    python benchmarks/torch_baseline.py --interleaved --model=resnet18 --image_size=112 \
        --batch_size=16 --rounds=5 --iters=2 --out=benchmarks/results/compare_torch_cpu

On a quiet machine the two scripts run one after the other give the official numbers.
torch and torchvision are test extras, not runtime packages.
"""

import copy
import datetime
import os
import platform
import statistics
import time

import cli  # benchmarks/cli.py
import torch
import torchvision
from torch import nn

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "inception_v3")
STEP_NAMES = ("supervised", "critic", "generator", "adversarial")
INTERLEAVED_ORDER = ("supervised", "adversarial", "critic", "generator")
DEFAULTS = {"steps": ",".join(STEP_NAMES), "iters": 5}
INTERLEAVED_DEFAULTS = {"steps": "supervised,adversarial", "iters": 2}

# The paper's method settings (jaxgan/base_config.py's defaults).
ALPHA, GP_WEIGHT, BETA, N_CRITIC, LEARNING_RATE = 10.0, 10.0, 0.9, 3, 1e-4


def parse_args(argv=None):
    parser = cli.parser(
        __doc__,
        ("model", "image_size", "batch_size", "dtype", "iters", "rounds", "out", "cpu_runtime"),
        iters=None,
    )
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="alternate JAX's compiled steps and PyTorch's, round by round, in one process",
    )
    parser.add_argument("--num_labels", type=int, default=80)
    parser.add_argument("--steps", default=None, help="which steps to time")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads; 0 = default"
    )
    cli.add_clock_flag(parser)
    args = parser.parse_args(argv)
    cli.fill_defaults(args, INTERLEAVED_DEFAULTS if args.interleaved else DEFAULTS)
    if args.model not in MODELS:
        parser.error(f"--model={args.model} has no torchvision counterpart; one of {list(MODELS)}")
    if args.dtype not in ("float32", "bfloat16"):
        parser.error(f"--dtype={args.dtype}: choose float32 or bfloat16")
    cli.check_positive(parser, args, ("image_size", "batch_size", "num_labels", "iters", "rounds"))
    unknown = set(args.steps.split(",")) - set(STEP_NAMES)
    if unknown:
        parser.error(f"--steps has {sorted(unknown)}; choose from {list(STEP_NAMES)}")
    return args


def build_generator(name: str, num_labels: int) -> nn.Module:
    if name == "inception_v3":
        return torchvision.models.inception_v3(
            num_classes=num_labels, aux_logits=False, init_weights=True
        )
    return getattr(torchvision.models, name)(num_classes=num_labels)


def feature_extractor(generator: nn.Module) -> nn.Module:
    """G without its output layer, frozen, in eval mode (running BatchNorm statistics)."""
    f_ext = copy.deepcopy(generator)
    if hasattr(f_ext, "fc"):
        f_ext.fc = nn.Identity()
    else:  # VGG: drop the last Linear; features are the second 4096-d layer's output
        f_ext.classifier[-1] = nn.Identity()
    f_ext.eval()
    for p in f_ext.parameters():
        p.requires_grad_(False)
    return f_ext


class Critic(nn.Module):
    """jaxgan/models/critic.py in torch: 256-d projections, 8 × [512 + leaky ReLU], 1."""

    def __init__(self, num_labels, feature_dim, embed=256, hidden=512, layers=8, slope=0.2):
        super().__init__()
        self.label_embed = nn.Linear(num_labels, embed)
        self.feature_embed = nn.Linear(feature_dim, embed)
        body, width = [], 2 * embed
        for _ in range(layers):
            body += [nn.Linear(width, hidden), nn.LeakyReLU(slope)]
            width = hidden
        self.body = nn.Sequential(*body, nn.Linear(hidden, 1))

    def forward(self, labels, features):
        h = torch.cat([self.feature_embed(features), self.label_embed(labels)], dim=-1)
        return self.body(h)[:, 0]


def gumbel_sigmoid(logits):
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    return torch.sigmoid(BETA * (logits + torch.log(u) - torch.log1p(-u)))


def bce(logits, labels):
    per_label = nn.functional.binary_cross_entropy_with_logits(
        logits.float(), labels, reduction="none"
    )
    return per_label.sum(-1).mean()


class Reference:
    """G, f_ext, D and both Adam optimisers, with one method per step."""

    def __init__(self, args):
        self.args = args
        self.autocast = args.dtype == "bfloat16"
        self.g = build_generator(args.model, args.num_labels)
        self.f_ext = feature_extractor(self.g)
        with torch.no_grad():
            size = args.image_size
            feature_dim = self.f_ext(torch.zeros(2, 3, size, size)).shape[-1]
        self.d = Critic(args.num_labels, feature_dim)
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=LEARNING_RATE)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=LEARNING_RATE)
        gen = torch.Generator().manual_seed(0)
        self.batches = [self._batch(gen) for _ in range(3 * N_CRITIC + 1)]

    def _batch(self, gen):
        b, size, n = self.args.batch_size, self.args.image_size, self.args.num_labels
        images = torch.randn(b, 3, size, size, generator=gen)
        labels = (torch.rand(b, n, generator=gen) < 3.0 / n).float()
        return images, labels

    def _cast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast)

    def supervised_step(self):
        images, labels = self.batches[0]
        self.g.train()
        with self._cast():
            loss = bce(self.g(images), labels)
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()

    def critic_step(self, offset=0):
        (x_real, y_real), (x_gen, y_gen), (x_wrong, y_wrong) = self.batches[offset : offset + 3]
        self.g.train()  # G draws ŷ in training mode, without gradient
        with torch.no_grad(), self._cast():
            fake = gumbel_sigmoid(self.g(x_gen).float())
            z_real, z_fake, z_wrong = (self.f_ext(x).float() for x in (x_real, x_gen, x_wrong))
        eps = torch.rand(fake.shape[0], 1)
        interpolated = (eps * y_gen + (1 - eps) * fake).requires_grad_(True)
        with self._cast():
            real_scores = self.d(y_real, z_real).float()
            fake_scores = self.d(fake, z_fake).float()
            wrong_scores = self.d(torch.roll(y_wrong, 1, 0), z_wrong).float()
            gp_scores = self.d(interpolated, z_fake).float()
        (grads,) = torch.autograd.grad(gp_scores.sum(), interpolated, create_graph=True)
        norms = torch.sqrt(grads.float().pow(2).sum(-1) + 1e-12)
        penalty = (norms - 1).pow(2).mean()
        loss = (
            -real_scores.mean()
            + 0.5 * fake_scores.mean()
            + 0.5 * wrong_scores.mean()
            + GP_WEIGHT * penalty
        )
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()

    def generator_step(self):
        images, labels = self.batches[-1]
        for p in self.d.parameters():  # the critic stays fixed: no gradient for it
            p.requires_grad_(False)
        self.g.train()
        with torch.no_grad(), self._cast():
            z = self.f_ext(images).float()
        with self._cast():
            logits = self.g(images).float()
            scores = self.d(gumbel_sigmoid(logits), z).float()
        loss = -scores.mean() + ALPHA * bce(logits, labels)
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        for p in self.d.parameters():
            p.requires_grad_(True)

    def adversarial_step(self):
        for i in range(N_CRITIC):
            self.critic_step(offset=3 * i)
        self.generator_step()

    def step(self, name):
        return {
            "supervised": self.supervised_step,
            "critic": self.critic_step,
            "generator": self.generator_step,
            "adversarial": self.adversarial_step,
        }[name]


def images_per_step(name, batch_size):
    return (
        batch_size
        * {"supervised": 1, "critic": 3, "generator": 1, "adversarial": 3 * N_CRITIC + 1}[name]
    )


def time_calls(call, iters, warmup):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = cli.load_average()
    reference = Reference(args)
    rows = {}
    for name in STEP_NAMES:
        if name not in args.steps.split(","):
            continue
        times = time_calls(reference.step(name), args.iters, args.warmup)
        median = statistics.median(times)
        images = images_per_step(name, args.batch_size)
        rows[name] = {
            "images_per_step": images,
            "ms_median": median * 1e3,
            "ms_min": min(times) * 1e3,
            "ms_all": [t * 1e3 for t in times],
            "images_per_s": images / median,
        }
        print(f"{name}: {median * 1e3:.1f} ms", flush=True)
    result = {
        "command": cli.command(),
        "args": vars(args),
        "environment": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": platform.machine(),
            "host_cpu_cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "load_average_1min": {"start": load_start, "end": cli.load_average()},
        "steps": rows,
    }
    if "supervised" in rows and "adversarial" in rows:
        result["adversarial_over_supervised"] = {
            "time": rows["adversarial"]["ms_median"] / rows["supervised"]["ms_median"]
        }
    return result


def markdown(result: dict) -> str:
    args, env, load = result["args"], result["environment"], result["load_average_1min"]
    lines = [
        f"`{result['command']}`",
        "",
        f"PyTorch {env['torch']} eager, {args['model']} at {args['image_size']} px, batch "
        f"{args['batch_size']}, {args['dtype']}, {args['num_labels']} labels; "
        f"{env['torch_threads']} threads on {env['host_cpu_cores']} cores; {env['date']}; "
        f"1-minute load average {load['start']:.1f} at the start, {load['end']:.1f} at the "
        f"end; median of {args['iters']} calls after {args['warmup']} untimed.",
        "",
        "| step | images/step | ms | images/s |",
        "| --- | --- | --- | --- |",
    ]
    for name, row in result["steps"].items():
        lines.append(
            f"| {name} | {row['images_per_step']} | {row['ms_median']:.1f} "
            f"| {row['images_per_s']:.1f} |"
        )
    ratio = result.get("adversarial_over_supervised")
    if ratio:
        lines += ["", f"Adversarial update ÷ supervised step: {ratio['time']:.2f}×."]
    return "\n".join(lines) + "\n"


def interleaved(args) -> tuple[dict, str]:
    """JAX's compiled steps (steps.py's `Bench`) and PyTorch's, alternated round by round."""
    import steps as jax_steps  # benchmarks/steps.py: imports JAX

    cli.configure_runtime(args)
    clock = cli.clock(args.clock)
    shared = [
        f"--model={args.model}",
        f"--image_size={args.image_size}",
        f"--batch_size={args.batch_size}",
        f"--dtype={args.dtype}",
        f"--num_labels={args.num_labels}",
        f"--steps={args.steps}",
        f"--cpu_runtime={args.cpu_runtime}",
    ]
    if args.threads:
        torch.set_num_threads(args.threads)
    load = [cli.load_average()]
    jax_bench = jax_steps.Bench(jax_steps.parse_args(shared))
    reference = Reference(args)
    names = [n for n in INTERLEAVED_ORDER if n in args.steps.split(",")]
    compiled = {n: jax_bench.compile(n) for n in names}
    for n in names:  # warm both up
        jax_bench.call(compiled[n])
        reference.step(n)()
    times = {n: {"jax": [], "torch": [], "ratio": []} for n in names}
    for r in range(args.rounds):
        for n in names:
            t_jax = cli.mean_time(lambda n=n: jax_bench.call(compiled[n]), args.iters, clock)
            t_torch = cli.mean_time(reference.step(n), args.iters, clock)
            times[n]["jax"].append(t_jax * 1e3)
            times[n]["torch"].append(t_torch * 1e3)
            times[n]["ratio"].append(t_torch / t_jax)
            print(
                f"round {r}: {n} jax {t_jax * 1e3:.0f} ms, torch {t_torch * 1e3:.0f} ms, "
                f"jax speed = {t_torch / t_jax:.2f}x torch's",
                flush=True,
            )
        load.append(cli.load_average())
    result = {
        "command": cli.command(),
        "args": vars(args),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_processor": cli.cpu_name(),
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
        f"{torch.get_num_threads()} PyTorch threads; 1-minute load average "
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
    return result, "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.interleaved:
        result, table = interleaved(args)
    else:
        result = run(args)
        table = markdown(result)
    return cli.report(args.out, result, table)


if __name__ == "__main__":
    main()
