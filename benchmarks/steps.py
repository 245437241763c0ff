"""Time the compiled training steps on synthetic batches already on the devices.

Times the training loop's own compiled steps (`jaxgan.compiled.compile_steps`: the BCE step
and the whole adversarial update, with their shardings, donation and compiler options) and,
for the per-step report, the critic and generator updates alone (`jaxgan.steps`), jitted the
same way (the state replicated and donated, the batch sharded over a ('data',) mesh); for any
backbone, input size, batch size, compute dtype and device count. Per step it reports the
median time, images per second, compile time, the FLOPs per step, the achieved FLOP/s and,
given the chip's peak, the utilisation; the adversarial update's cost in BCE steps; memory.

It imports no TensorFlow and needs only the runtime packages (jax, flax, optax,
ml_collections), so it runs on an accelerator host as it is:

    python benchmarks/steps.py --model=resnet101 --image_size=224 --batch_size=32 \
        --dtype=bfloat16 --out=benchmarks/results/steps_h100_resnet101

On a CPU, more than one device needs XLA_FLAGS=--xla_force_host_platform_device_count=N.

FLOPs are counted from the step's jaxpr (`jaxgan.flops`: convolutions and matrix products, 2
per multiply-add, every iteration of the critic updates' scan), the same number on every
backend; utilisation is computed from that count. XLA's own cost analysis is reported beside
it, labelled as XLA's: it counts one device's program after the backend has lowered it, a
loop's body once, and on a GPU not the convolutions handed to cuDNN. Memory: "XLA" is what the
compiled program holds live at once (arguments + outputs + temporaries, less what donation
aliases), per device, from buffer assignment; "device peak" is the backend's peak bytes in use
since the process started (GPU and TPU report it, CPU does not), read after each step in the
order they run.

With --backbones it times instead the forward and backward pass of each backbone alone (the
generator's BCE step without the optimiser: train-mode forward, sigmoid cross-entropy against
random labels, the gradient of every parameter) per image, for each compute dtype, at the
input size each backbone's ImageNet weights expect (`jaxgan.models.GENERATORS`):

    python benchmarks/steps.py --backbones --out=benchmarks/results/bench_backbones

There --model and --dtype take comma-separated lists; the first call (compilation included)
is reported apart, and the time per image is the median of --iters calls over the batch.

With --startup it launches the main command on the embedded data instead, --iters times in a
row with one compilation cache that starts empty (each launch in a fresh workdir, the
dataset already built), and reports the seconds from each launch to its first update (the
"first step" line): the first launch compiles, the later ones read the cache.

    python benchmarks/steps.py --startup --iters=3 --out=benchmarks/results/startup_cpu

Extra `--config.FIELD=VALUE` arguments go to every launch.
"""

import dataclasses
import datetime
import functools
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cli  # benchmarks/cli.py
import jax
import jax.numpy as jnp
import optax

from jaxgan import flops, parallel, runtime, steps
from jaxgan.base_config import get_base_config
from jaxgan.compiled import compile_steps
from jaxgan.models import DTYPES, GENERATORS, build_generator, create_generator
from jaxgan.models.critic import create_critic
from jaxgan.state import create_train_state, make_optimizer

STEP_NAMES = ("supervised", "critic", "generator", "adversarial")
STEP_DEFAULTS = {
    "model": "resnet18",
    "image_size": 112,
    "batch_size": 16,
    "dtype": "float32",
    "iters": 5,
}
BACKBONE_DEFAULTS = {
    "model": "vgg16,inception_v3,resnet101,resnet152",
    "image_size": 0,  # each backbone's ImageNet input
    "batch_size": 8,
    "dtype": "float32,bfloat16",
    "iters": 2,
}

# Dense peak TFLOP/s per chip: (bfloat16 compute, float32 compute under JAX's default matmul
# precision). By default JAX runs float32 convolutions and matmuls as TF32 on NVIDIA tensor
# cores (A100 and later) and as one bfloat16 pass on TPUs, so those are the float32 peaks.
PEAK_TFLOPS = {
    "h200": (989.0, 494.0),  # H200 SXM: same tensor cores as H100 SXM
    "h100": (989.0, 494.0),  # H100 SXM
    "h100-pcie": (756.0, 378.0),
    "a100": (312.0, 156.0),
    "tpu-v4": (275.0, 275.0),
    "tpu-v5e": (197.0, 197.0),
    "tpu-v5p": (459.0, 459.0),
    "tpu-v6e": (918.0, 918.0),
}


def known_chip(device_kind: str) -> str | None:
    """The PEAK_TFLOPS key for a jax Device.device_kind string, or None if unknown."""
    kind = device_kind.lower()
    if "h200" in kind:
        return "h200"
    if "h100" in kind:
        return "h100-pcie" if "pcie" in kind else "h100"
    if "a100" in kind:
        return "a100"
    if "tpu" in kind:
        if "v4" in kind:
            return "tpu-v4"
        if "v5 lite" in kind or "v5e" in kind or "v5litepod" in kind:
            return "tpu-v5e"
        if "v5" in kind:
            return "tpu-v5p"
        if "v6 lite" in kind or "v6e" in kind:
            return "tpu-v6e"
    return None


def parse_args(argv=None):
    defaults = dict.fromkeys(STEP_DEFAULTS)
    parser = cli.parser(
        __doc__,
        ("model", "image_size", "batch_size", "dtype", "iters", "out", "cpu_runtime"),
        **defaults,
    )
    parser.add_argument(
        "--startup",
        action="store_true",
        help="launch the main command --iters times with one compilation cache, starting empty, "
        "and report the seconds to each launch's first update",
    )
    parser.add_argument(
        "--backbones",
        action="store_true",
        help="time each backbone's forward+backward per image instead of the training steps "
        "(--model and --dtype: comma-separated lists)",
    )
    parser.add_argument("--width", type=int, default=64, help="ResNet base width")
    parser.add_argument("--num_labels", type=int, default=80)
    parser.add_argument("--num_devices", type=int, default=0, help="0 = every device")
    parser.add_argument("--remat", action="store_true", help="model.remat: recompute blocks")
    parser.add_argument("--steps", default=",".join(STEP_NAMES), help="which steps to time")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument(
        "--compile_only",
        action="store_true",
        help="compile and report FLOPs and XLA's memory, run nothing (large models on a CPU)",
    )
    parser.add_argument(
        "--chip",
        default="auto",
        help=f"peak FLOP/s from a known chip: auto (from the device), none, {sorted(PEAK_TFLOPS)}",
    )
    parser.add_argument("--peak_tflops", type=float, default=0.0, help="per chip; overrides --chip")
    parser.add_argument(
        "--xla_options",
        default="project",
        choices=("project", "none"),
        help="project: the compiler options training uses (jaxgan/runtime.py); none: XLA's",
    )
    args, overrides = parser.parse_known_args(argv)
    args.overrides = [a for a in overrides if a.startswith("--config.")]
    if len(args.overrides) != len(overrides) or (overrides and not args.startup):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    cli.fill_defaults(args, BACKBONE_DEFAULTS if args.backbones else STEP_DEFAULTS)
    check_args(args, parser)
    return args


def check_args(args, parser) -> None:
    """One actionable line for each bad flag, before anything is compiled."""
    models = args.model.split(",") if args.backbones else [args.model]
    dtypes = args.dtype.split(",") if args.backbones else [args.dtype]
    for model in models:
        if model not in GENERATORS:
            parser.error(f"--model={model} is unknown; choose one of {sorted(GENERATORS)}")
        if args.backbones and not args.image_size and not GENERATORS[model].image_size:
            parser.error(f"{model} has no ImageNet input size: pass --image_size")
    for dtype in dtypes:
        if dtype not in DTYPES:
            parser.error(f"--dtype={dtype} is unknown; choose one of {sorted(DTYPES)}")
    positive = ("batch_size", "width", "num_labels", "iters")
    cli.check_positive(parser, args, positive if args.backbones else ("image_size", *positive))
    if args.image_size < 0 or args.warmup < 0 or args.num_devices < 0 or args.peak_tflops < 0:
        parser.error("--image_size, --warmup, --num_devices and --peak_tflops must be >= 0")
    unknown = set(args.steps.split(",")) - set(STEP_NAMES)
    if unknown:
        parser.error(f"--steps has {sorted(unknown)}; choose from {list(STEP_NAMES)}")
    if args.chip not in ("auto", "none", *PEAK_TFLOPS):
        parser.error(f"--chip={args.chip} is unknown; choose auto, none or {sorted(PEAK_TFLOPS)}")


def devices_for(args) -> list:
    """The devices to run on, or one actionable line. Not in check_args: counting devices
    starts JAX's backends, which `runtime.configure_cpu` must precede."""
    available = jax.device_count()
    count = args.num_devices or available
    if count > available:
        raise SystemExit(
            f"error: --num_devices={count} but {available} device(s) are visible; on a CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={count}"
        )
    if args.batch_size % count:
        raise SystemExit(
            f"error: --batch_size={args.batch_size} must be a multiple of the {count} devices"
        )
    return jax.devices()[:count]


def benchmark_config(args):
    """The base config (the paper's method settings) with this benchmark's model and sizes."""
    config = get_base_config()
    config.model.name = args.model
    config.model.dtype = args.dtype
    config.model.width = args.width
    if "remat" in config.model:
        config.model.remat = args.remat
    elif args.remat:
        raise SystemExit("--remat: this version of the model has no model.remat switch")
    config.data.image_size = args.image_size
    config.schedule.batch_size = args.batch_size
    return config


def synthetic_batch(key, leading, size, num_labels):
    """Images ~ N(0, 1) (normalised pixels) and multi-hot labels with ~3 positives of 80."""
    image_key, label_key = jax.random.split(key)
    images = jax.random.normal(image_key, (*leading, size, size, 3), jnp.float32)
    labels = jax.random.bernoulli(label_key, 3.0 / num_labels, (*leading, num_labels))
    return {"image": images, "labels": labels.astype(jnp.float32)}


@dataclasses.dataclass
class CompiledStep:
    name: str
    images: int  # images the step reads (the training stream's consumption)
    compiled: object  # jax.stages.Compiled, called as compiled(state, *batches)
    batches: tuple
    compile_s: float
    flops: flops.Count  # counted from the jaxpr: the global step, every loop iteration
    xla_flops_per_device: float  # XLA's cost analysis: one device's program, loop bodies once
    memory_bytes: int | None


def xla_flops(compiled) -> float:
    """XLA's cost-analysis FLOPs of a compiled program (0 where the backend gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older jax: one dict per program
        analysis = analysis[0]
    return float((analysis or {}).get("flops", 0.0))


def _compiled_bytes(compiled) -> int | None:
    """Bytes live at once while the program runs: arguments + outputs + temporaries − aliased."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )


class Bench:
    """The state and the compiled steps of one configuration, on `num_devices` devices."""

    def __init__(self, args):
        self.args = args
        self.config = config = benchmark_config(args)
        devices = devices_for(args)
        self.mesh = parallel.create_mesh(devices)
        generator = create_generator(config.model, args.num_labels)
        critic = create_critic(config)
        generator_tx = make_optimizer(config.optim.generator_learning_rate, config.optim)
        critic_tx = make_optimizer(config.optim.critic_learning_rate, config.optim)
        self.ctx = steps.StepContext.from_config(config, generator, critic, generator_tx, critic_tx)
        self.repl = parallel.replicated(self.mesh)
        self.data = parallel.batch_sharded(self.mesh)
        self.stacked = parallel.batch_sharded(self.mesh, leading_axes=1)
        start = time.perf_counter()
        self.state = self._init_state(generator, critic, generator_tx, critic_tx)
        jax.block_until_ready(self.state)
        self.init_s = time.perf_counter() - start
        self.n_critic = config.method.n_critic
        self.compiler_options = runtime.compiler_options(devices[0].platform)
        self.trainer = compile_steps(self.ctx, self.mesh)

    def _init_state(self, generator, critic, generator_tx, critic_tx):
        args = self.args

        def init():
            g_key, critic_key, run_key = jax.random.split(jax.random.key(0), 3)
            image = jnp.zeros((1, args.image_size, args.image_size, 3), jnp.float32)
            g_variables = generator.init({"params": g_key, "dropout": g_key}, image, train=False)
            features = generator.apply(g_variables, image, train=False, features_only=True)
            critic_params = critic.init(critic_key, jnp.zeros((1, args.num_labels)), features)
            return create_train_state(
                run_key, g_variables, critic_params["params"], generator_tx, critic_tx
            )

        return jax.jit(init, out_shardings=self.repl)()

    def _batch(self, seed, leading=()):
        batch = synthetic_batch(
            jax.random.key(seed),
            (*leading, self.args.batch_size),
            self.args.image_size,
            self.args.num_labels,
        )
        return jax.device_put(batch, self.stacked if leading else self.data)

    def compile(self, name: str, compiler_options: dict | None = None) -> CompiledStep:
        """Traces, lowers and compiles one step as the training loop does (state donated)."""
        batch_size, n = self.args.batch_size, self.n_critic
        if name == "supervised":
            fn, batches, shardings, images = (
                steps.supervised_step,
                (self._batch(0),),
                (self.data,),
                1,
            )
        elif name == "critic":
            critic_batches = {
                k: self._batch(i + 1) for i, k in enumerate(("matched", "generated", "mismatched"))
            }
            fn, batches, shardings, images = (
                steps.critic_step,
                (critic_batches,),
                (self.data,),
                3,
            )
        elif name == "generator":
            fn, batches, shardings, images = (
                steps.generator_step,
                (self._batch(4),),
                (self.data,),
                1,
            )
        else:
            stacked = {
                k: self._batch(10 + i, leading=(n,))
                for i, k in enumerate(("matched", "generated", "mismatched"))
            }
            fn, batches = steps.adversarial_step, (stacked, self._batch(20))
            shardings, images = (self.stacked, self.data), 3 * n + 1
        trainers = {"supervised": self.trainer.supervised, "adversarial": self.trainer.adversarial}
        if name in trainers and compiler_options is None and self.args.xla_options == "project":
            # The training loop's own compiled step (its shardings, donation, compiler options).
            jitted, compiler_options = trainers[name], None
        else:  # critic and generator updates alone, or another compiler's options
            jitted = jax.jit(
                functools.partial(fn, ctx=self.ctx),
                in_shardings=(self.repl, *shardings),
                out_shardings=(self.repl, self.repl),
                donate_argnums=0,
            )
            if compiler_options is None and self.args.xla_options == "project":
                compiler_options = self.compiler_options
        counted = flops.count(jitted, self.state, *batches)  # traces only: nothing is donated
        start = time.perf_counter()
        compiled = jitted.lower(self.state, *batches).compile(compiler_options or None)
        compile_s = time.perf_counter() - start
        return CompiledStep(
            name,
            images * batch_size,
            compiled,
            batches,
            compile_s,
            counted,
            xla_flops(compiled),
            _compiled_bytes(compiled),
        )

    def call(self, step: CompiledStep) -> None:
        """One synchronised call; the state threads through (it is donated)."""
        self.state, metrics = step.compiled(self.state, *step.batches)
        jax.block_until_ready((self.state, metrics))


def device_peak_bytes(devices) -> int | None:
    """The largest peak bytes in use over `devices`, where the backend reports it."""
    peaks = []
    for device in devices:
        try:
            stats = device.memory_stats()
        except Exception:
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    return max(peaks) if peaks else None


def time_calls(call, iters: int, warmup: int) -> tuple[list[float], dict]:
    """Each timed call's wall time, and the host's page faults and system CPU per call (on a
    CPU, what allocating the step's buffers costs the kernel)."""
    for _ in range(warmup):
        call()
    times = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    host = {
        "page_faults_per_call": (after.ru_minflt - before.ru_minflt) / iters,
        "system_cpu_ms_per_call": (after.ru_stime - before.ru_stime) / iters * 1e3,
    }
    return times, host


def peak_tflops(args, device_kind: str, dtype: str | None = None) -> tuple[float | None, str]:
    """The per-chip peak for this dtype and where it came from."""
    if args.peak_tflops:
        return args.peak_tflops, "--peak_tflops"
    chip = known_chip(device_kind) if args.chip == "auto" else args.chip
    if chip in (None, "none"):
        return None, "unknown chip (pass --peak_tflops)"
    bf16, f32 = PEAK_TFLOPS[chip]
    return (bf16 if (dtype or args.dtype) == "bfloat16" else f32), chip


def environment(devices) -> dict:
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "devices": len(devices),
        "processes": jax.process_count(),
        "host": platform.machine(),
        "host_processor": cli.cpu_name(),
        "host_cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _compiler_options_used(args, devices) -> dict:
    if args.xla_options == "none":
        return {}
    return runtime.compiler_options(devices[0].platform)


def run(args) -> dict:
    load_start = cli.load_average()
    bench = Bench(args)
    devices = list(bench.mesh.devices.flat)
    peak, peak_source = peak_tflops(args, devices[0].device_kind)
    rows = {}
    for name in STEP_NAMES:
        if name not in args.steps.split(","):
            continue
        step = bench.compile(name)
        if args.compile_only:
            times, host = [float("nan")], {}
        else:
            call = functools.partial(bench.call, step)
            times, host = time_calls(call, args.iters, args.warmup)
        median = statistics.median(times)
        per_device = step.flops.flops / len(devices) / median
        rows[name] = {
            "images_per_step": step.images,
            "ms_median": median * 1e3,
            "ms_min": min(times) * 1e3,
            "ms_all": [t * 1e3 for t in times],
            "images_per_s": step.images / median,
            "compile_s": step.compile_s,
            "gflop_per_step": step.flops.flops / 1e9,
            "gflop_by_primitive": {k: v / 1e9 for k, v in step.flops.by_primitive.items()},
            "loops_of_unknown_trip_count": step.flops.unknown_trip_counts,
            "xla_cost_analysis_gflop_per_step": step.xla_flops_per_device * len(devices) / 1e9,
            "tflops_per_s_per_device": per_device / 1e12,
            "utilisation": per_device / (peak * 1e12) if peak else None,
            "xla_memory_mib_per_device": _mib(step.memory_bytes),
            "device_peak_mib": _mib(device_peak_bytes(devices)),
            **host,
        }
        print(f"{name}: {median * 1e3:.1f} ms (compile {step.compile_s:.1f} s)", flush=True)
    result = {
        "command": cli.command(),
        "args": vars(args),
        "environment": environment(devices),
        "load_average_1min": {"start": load_start, "end": cli.load_average()},
        "compiler_options": _compiler_options_used(args, devices),
        "init_s": bench.init_s,
        "peak_tflops_per_device": peak,
        "peak_source": peak_source,
        "flops_source": "jaxgan.flops: convolutions and matrix products in the step's jaxpr",
        "steps": rows,
    }
    if "supervised" in rows and "adversarial" in rows:
        result["adversarial_over_supervised"] = {
            "time": rows["adversarial"]["ms_median"] / rows["supervised"]["ms_median"],
            "flops": rows["adversarial"]["gflop_per_step"] / rows["supervised"]["gflop_per_step"],
        }
    return result


def _mib(value):
    return None if value is None else value / 2**20


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    env, args = result["environment"], result["args"]
    load = result["load_average_1min"]
    lines = [
        f"`{result['command']}`",
        "",
        f"{args['model']} at {args['image_size']} px, global batch {args['batch_size']}, "
        f"{args['dtype']}, {args['num_labels']} labels{', remat' if args['remat'] else ''}; "
        f"{env['devices']} × {env['device_kind']} ({env['platform']}), host "
        f"{env['host_processor']} with {env['host_cpu_cores']} cores; jax {env['jax']}; "
        f"{env['date']}; 1-minute load average {load['start']:.1f} at the start, "
        f"{load['end']:.1f} at the end; median of {args['iters']} calls after "
        f"{args['warmup']} untimed; peak {_fmt(result['peak_tflops_per_device'], '.0f')} "
        f"TFLOP/s per device ({result['peak_source']}); CPU runtime: {args['cpu_runtime']}. "
        "GFLOP/step: convolutions and matrix products counted from the step's jaxpr "
        "(`jaxgan.flops`), which TFLOP/s and utilisation use; XLA's: its cost analysis, "
        "all devices, a loop's body once, no cuDNN convolutions on a GPU.",
        "",
        "| step | images/step | ms | images/s | compile s | GFLOP/step | XLA's GFLOP/step "
        "| TFLOP/s/device | utilisation | XLA memory MiB/device | device peak MiB "
        "| host page faults/call | host system CPU ms/call |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["steps"].items():
        lines.append(
            f"| {name} | {row['images_per_step']} | {row['ms_median']:.1f} "
            f"| {row['images_per_s']:.1f} | {row['compile_s']:.1f} "
            f"| {row['gflop_per_step']:.4g} | {row['xla_cost_analysis_gflop_per_step']:.4g} "
            f"| {_fmt(row['tflops_per_s_per_device'], '.3f')} "
            f"| {_fmt(row['utilisation'], '.1%')} "
            f"| {_fmt(row['xla_memory_mib_per_device'], '.0f')} "
            f"| {_fmt(row['device_peak_mib'], '.0f')} "
            f"| {_fmt(row.get('page_faults_per_call'), '.0f')} "
            f"| {_fmt(row.get('system_cpu_ms_per_call'), '.0f')} |"
        )
    ratio = result.get("adversarial_over_supervised")
    if ratio:
        lines += [
            "",
            f"Adversarial update ÷ supervised step: {ratio['time']:.2f}× the time, "
            f"{_fmt(ratio['flops'], '.2f')}× the FLOPs.",
        ]
    return "\n".join(lines) + "\n"


def backbone_step(arch, dtype_name, args):
    """(the jitted forward+backward of `arch`, its arguments)."""
    spec = GENERATORS[arch]
    size = args.image_size or spec.image_size
    width = {"width": args.width} if spec.width_configurable else {}
    model = build_generator(
        arch, args.num_labels, dtype=DTYPES[dtype_name], remat=args.remat, **width
    )
    key = jax.random.key(0)
    x = jax.random.normal(key, (args.batch_size, size, size, 3), jnp.float32)
    labels = jax.random.uniform(jax.random.key(1), (args.batch_size, args.num_labels)) < 0.05
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
    batch_stats = variables.get("batch_stats", {})
    return step, (variables["params"], batch_stats, x, labels.astype(jnp.float32), key), size


def time_backbone(arch, dtype_name, args) -> dict:
    step, step_args, size = backbone_step(arch, dtype_name, args)
    counted = flops.flops(step, *step_args)
    start = time.perf_counter()
    jax.block_until_ready(step(*step_args))
    first = time.perf_counter() - start
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        jax.block_until_ready(step(*step_args))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak, _ = peak_tflops(args, jax.devices()[0].device_kind, dtype_name)
    return {
        "backbone": arch,
        "image_size": size,
        "dtype": dtype_name,
        "ms_per_image": median / args.batch_size * 1e3,
        "s_per_step": median,
        "first_call_s": first,
        "gflop_per_image": counted / args.batch_size / 1e9,
        "tflops_per_s": counted / median / 1e12,
        "utilisation": counted / median / (peak * 1e12) if peak else None,
    }


def run_backbones(args) -> tuple[dict, str]:
    load_start = cli.load_average()
    rows = []
    for arch in args.model.split(","):
        for dtype_name in args.dtype.split(","):
            row = time_backbone(arch, dtype_name, args)
            print(f"{arch} {dtype_name}: {row['ms_per_image']:.1f} ms/image", flush=True)
            rows.append(row)
    device = jax.devices()[0]
    result = {
        "command": cli.command(),
        "args": vars(args),
        "environment": environment([device]),
        "load_average_1min": {"start": load_start, "end": cli.load_average()},
        "backbones": rows,
    }
    env, load = result["environment"], result["load_average_1min"]
    lines = [
        f"`{result['command']}`",
        "",
        f"{env['device_kind']} ({env['platform']}), host {env['host_processor']} with "
        f"{env['host_cpu_cores']} cores; jax {env['jax']}; {env['date']}; batch "
        f"{args.batch_size}, {args.num_labels} labels, median of {args.iters} timed steps "
        f"after one untimed (the first call, compilation included); CPU runtime: "
        f"{args.cpu_runtime}; 1-minute load average {load['start']:.1f} at the start, "
        f"{load['end']:.1f} at the end (other jobs on the same cores inflate the times). "
        "GFLOP/image: forward and backward, counted from the jaxpr (`jaxgan.flops`).",
        "",
        "| backbone | input | compute dtype | fwd+bwd ms / image | s / step | first call s "
        "| GFLOP / image | TFLOP/s | utilisation |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['backbone']} | {row['image_size']} | {row['dtype']} "
            f"| {row['ms_per_image']:.3g} | {row['s_per_step']:.3g} | {row['first_call_s']:.1f} "
            f"| {row['gflop_per_image']:.4g} | {row['tflops_per_s']:.3g} "
            f"| {_fmt(row['utilisation'], '.1%')} |"
        )
    return result, "\n".join(lines) + "\n"


def launch_until_first_update(command: list[str], env: dict) -> float:
    """Seconds from starting `command` to its "first step" line of the supervised phase; the
    command then runs to its end."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cli.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seconds, lines = None, []
    for line in process.stdout:
        lines.append(line)
        if seconds is None and line.startswith("supervised phase: first step"):
            seconds = time.perf_counter() - started
    if process.wait() != 0 or seconds is None:
        raise SystemExit(f"the main command failed:\n{''.join(lines[-20:])}")
    return seconds


def run_startup(args) -> tuple[dict, str]:
    """--startup: the main command's time to its first update, first with an empty
    compilation cache, then reading it."""
    scratch = tempfile.mkdtemp(prefix="jaxgan-startup-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    base = [sys.executable, "-m", "jaxgan.main", "--config=configs/digit_scenes.py"]
    base += ["--config.schedule.supervised_steps=1", "--config.schedule.adversarial_steps=0"]
    base += args.overrides

    def launch(name: str, cache: str) -> float:
        workdir = os.path.join(scratch, name)
        flags = [f"--workdir={workdir}", f"--config.compilation_cache.dir={cache}"]
        return launch_until_first_update([*base, *flags], env)

    try:
        launch("build", "")  # the dataset, built before anything is timed
        cache = os.path.join(scratch, "cache")
        seconds = [launch(f"launch{i}", cache) for i in range(args.iters)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {"command": cli.command(), "seconds_to_first_update": seconds,
              "later_over_first": [s / seconds[0] for s in seconds[1:]]}  # fmt: skip
    header = "| launch | compilation cache | seconds to first update |"
    lines = [f"`{result['command']}`", "", header, "|---|---|---|"]
    for i, s in enumerate(seconds):
        lines.append(f"| {i + 1} | {'empty' if i == 0 else 'read'} | {s:.1f} |")
    return result, "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.startup:
        result, table = run_startup(args)
        return cli.report(args.out, result, table)
    cli.configure_runtime(args)
    if args.backbones:
        result, table = run_backbones(args)
    else:
        result = run(args)
        table = markdown(result)
    return cli.report(args.out, result, table)


if __name__ == "__main__":
    main()
