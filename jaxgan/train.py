"""The training loop: build the state, restore, run both phases, evaluate, checkpoint, log."""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import metrics as metrics_lib
from jaxgan import parallel, steps, xla_options
from jaxgan.checkpoint import Checkpointer, metadata
from jaxgan.data import input_pipeline
from jaxgan.data.datasets import get_source
from jaxgan.models import create_generator
from jaxgan.models.discriminator import create_discriminator
from jaxgan.state import create_train_state, snapshot_feature_extractor

FEATURE_EXTRACTORS = ("snapshot", "pretrained")


def validate_config(config) -> None:
    """Stops with one actionable line for values the run cannot work with."""
    s, m = config.schedule, config.method
    for name in ("bce_steps", "adversarial_steps", "log_every", "checkpoint_every", "eval_every"):
        if s[name] < 0:
            raise ValueError(f"schedule.{name} must be >= 0, got {s[name]}")
    parallel.check_batch_size(s.batch_size, "schedule.batch_size")
    parallel.check_batch_size(s.eval_batch_size, "schedule.eval_batch_size")
    if m.n_critic < 1:
        raise ValueError(f"method.n_critic must be >= 1, got {m.n_critic}")
    if not 0.0 < m.threshold < 1.0:
        raise ValueError(f"method.threshold must lie in (0, 1), got {m.threshold}")
    if not m.conditional and m.negative_sampling:
        raise ValueError(
            "method.conditional=False needs method.negative_sampling=False: to a critic that "
            "sees no image, mismatched label sets are real ones (ablation d drops both)"
        )
    if m.feature_extractor not in FEATURE_EXTRACTORS:
        raise ValueError(
            f"unknown method.feature_extractor {m.feature_extractor!r}; "
            f"choose one of {list(FEATURE_EXTRACTORS)}"
        )


def make_optimizer(learning_rate: float, optim_config) -> optax.GradientTransformation:
    if optim_config.weight_decay:
        return optax.adamw(
            learning_rate, optim_config.b1, optim_config.b2, weight_decay=optim_config.weight_decay
        )
    return optax.adam(learning_rate, optim_config.b1, optim_config.b2)


def batches_per_update(config) -> int:
    """Batches one adversarial update reads: n_critic × (2 or 3 pair kinds) + 1 for G."""
    kinds = 3 if config.method.negative_sampling else 2
    return config.method.n_critic * kinds + 1


def batches_consumed(config, step: int) -> int:
    """The training stream's position after `step` generator updates."""
    bce = min(step, config.schedule.bce_steps)
    return bce + (step - bce) * batches_per_update(config)


class Run:
    """Everything built from a config: data source, models, compiled steps, initial state."""

    def __init__(self, config, workdir: str):
        validate_config(config)
        self.config, self.workdir = config, workdir
        self.source = get_source(config.data)
        self.num_labels = self.source.num_labels
        self.mesh = parallel.create_mesh()
        self.generator = create_generator(config.model, self.num_labels)
        self.discriminator = create_discriminator(config)
        g_tx = make_optimizer(config.optim.g_learning_rate, config.optim)
        d_tx = make_optimizer(config.optim.d_learning_rate, config.optim)
        self.ctx = steps.StepContext.from_config(
            config, self.generator, self.discriminator, g_tx, d_tx
        )
        self.state = self._init_state(g_tx, d_tx)
        self.meta = metadata(config, self.num_labels)
        self.checkpointer = Checkpointer(workdir, config.schedule.keep_checkpoints)
        repl, data = parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh)
        self.data_sharding = data
        self.stacked_sharding = parallel.batch_sharded(self.mesh, leading_axes=1)
        options = xla_options.compiler_options(self.mesh.devices.flat[0].platform)
        jit = functools.partial(jax.jit, donate_argnums=0, compiler_options=options)
        self.bce_step = jit(
            functools.partial(steps.bce_step, ctx=self.ctx),
            in_shardings=(repl, data),
            out_shardings=(repl, repl),
        )
        self.adversarial_step = jit(
            functools.partial(steps.adversarial_step, ctx=self.ctx),
            in_shardings=(repl, self.stacked_sharding, data),
            out_shardings=(repl, repl),
        )
        self.eval_step = jax.jit(
            functools.partial(steps.eval_step, ctx=self.ctx),
            compiler_options=options,
            in_shardings=(repl, data),
            out_shardings=data,
        )

    def _init_state(self, g_tx, d_tx):
        config = self.config
        g_key, d_key, run_key = jax.random.split(jax.random.key(config.seed), 3)
        size = config.data.image_size
        image = jnp.zeros((1, size, size, 3), jnp.float32)
        g_variables = self.generator.init({"params": g_key, "dropout": g_key}, image, train=False)
        if config.model.pretrained:
            from jaxgan.models.convert import load_pretrained

            g_variables = load_pretrained(config.model.pretrained, g_variables, config.model.name)
        features = self.generator.apply(g_variables, image, train=False, features_only=True)
        d_params = self.discriminator.init(d_key, jnp.zeros((1, self.num_labels)), features)[
            "params"
        ]
        state = create_train_state(run_key, g_variables, d_params, g_tx, d_tx)
        return jax.device_put(state, parallel.replicated(self.mesh))

    def restore(self, step: int | None = None) -> bool:
        """Restores the latest (or a named) checkpoint; False if the workdir has none."""
        if step is None and self.checkpointer.latest_step() is None:
            return False
        self.state = self.checkpointer.restore(self.state, self.meta, step)
        return True

    def predict(self, role: str) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and labels over a whole split (padding rows dropped)."""
        scores, labels = [], []
        batch_size = parallel.local_batch_size(self.config.schedule.eval_batch_size)
        for batch in input_pipeline.eval_batches(self.source, self.config.data, role, batch_size):
            mask = parallel.to_host(parallel.to_global(batch["mask"], self.data_sharding))
            batch = parallel.to_global(
                {k: batch[k] for k in ("image", "labels")}, self.data_sharding
            )
            probs = parallel.to_host(self.eval_step(self.state, batch))
            scores.append(probs[mask])
            labels.append(parallel.to_host(batch["labels"])[mask])
        return np.concatenate(scores), np.concatenate(labels)

    def evaluate(self) -> dict:
        """Metrics on the test split at the configured threshold, plus CF1/OF1 at thresholds
        chosen on the validation split (which separates calibration from the rest)."""
        val_scores, val_labels = self.predict("validation")
        test_scores, test_labels = self.predict("test")
        results = metrics_lib.compute_metrics(
            test_scores, test_labels, self.config.method.threshold
        )
        for name in ("CF1", "OF1"):
            threshold = metrics_lib.best_threshold(val_scores, val_labels, name)
            tuned = metrics_lib.precision_recall_f1(test_scores > threshold, test_labels)
            results[f"{name}_val_threshold"] = tuned[name]
            results[f"{name}_threshold"] = threshold
        at_threshold = val_scores > self.config.method.threshold
        results["validation_CF1"] = metrics_lib.precision_recall_f1(at_threshold, val_labels)["CF1"]
        return results


class Logger:
    """Progress lines on stdout and JSON lines in `<workdir>/metrics.jsonl` (process 0 only)."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")

    def log(self, record: dict, line: str | None = None) -> None:
        if not self.active:
            return
        if line:
            print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")


def _jsonable(value):
    return value.item() if hasattr(value, "item") else value


def _progress_line(step, total, phase, values, rate, seconds_left):
    shown = " ".join(f"{k}={float(v):.4f}" for k, v in sorted(values.items()))
    return (
        f"step {step}/{total} [{phase}] {shown} | {rate:.2f} steps/s, "
        f"{seconds_left / 60:.1f} min left"
    )


def _stack(batches: list[dict]) -> dict:
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def _next_update_batches(config, batches):
    """One adversarial update's data: n_critic × {matched, generated, mismatched}, then G's."""
    kinds = ("matched", "generated", "mismatched")[: 3 if config.method.negative_sampling else 2]
    critic = {kind: [] for kind in kinds}
    for _ in range(config.method.n_critic):
        for kind in kinds:
            critic[kind].append(next(batches))
    stacked = {kind: _stack(critic[kind]) for kind in kinds}
    if not config.method.negative_sampling:
        stacked["mismatched"] = stacked["generated"]  # unused by the step; keeps one signature
    return stacked, next(batches)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (resuming from `workdir` if it holds a checkpoint), then evaluates on test."""
    os.makedirs(workdir, exist_ok=True)
    run = Run(config, workdir)
    logger = Logger(workdir)
    schedule = config.schedule
    total = schedule.bce_steps + schedule.adversarial_steps
    if run.restore():
        logger.log(
            {"event": "resumed", "step": int(run.state.step)},
            f"resumed from the checkpoint at step {int(run.state.step)} in {workdir}",
        )
    step = int(run.state.step)
    batches = input_pipeline.train_batches(
        run.source,
        config.data,
        parallel.local_batch_size(schedule.batch_size),
        config.seed,
        start_batch=batches_consumed(config, step),
    )
    logger.log(
        {
            "event": "start",
            "step": step,
            "total": total,
            "labels": run.num_labels,
            "train_images": run.source.num_examples("train"),
            "devices": jax.device_count(),
        },
        f"training {config.model.name} on {config.data.name} ({run.num_labels} labels, "
        f"{run.source.num_examples('train')} train images) on {jax.device_count()} device(s): "
        f"{schedule.bce_steps} BCE + {schedule.adversarial_steps} adversarial steps",
    )
    window_start, window_steps = time.time(), 0
    results = None
    try:
        while step < total:
            phase = "bce" if step < schedule.bce_steps else "adversarial"
            if phase == "bce":
                batch = parallel.to_global(next(batches), run.data_sharding)
                run.state, values = run.bce_step(run.state, batch)
            else:
                if step == schedule.bce_steps and config.method.feature_extractor == "snapshot":
                    run.state = snapshot_feature_extractor(run.state)
                critic, generator = _next_update_batches(config, batches)
                run.state, values = run.adversarial_step(
                    run.state,
                    parallel.to_global(critic, run.stacked_sharding),
                    parallel.to_global(generator, run.data_sharding),
                )
            step += 1
            window_steps += 1
            phase_end = step in (schedule.bce_steps, total)
            if schedule.log_every and (step % schedule.log_every == 0 or phase_end):
                values = jax.device_get(values)
                rate = window_steps / max(time.time() - window_start, 1e-9)
                left = _seconds_left(config, step, rate, phase)
                logger.log(
                    {"step": step, "phase": phase, **values, "steps_per_s": rate},
                    _progress_line(step, total, phase, values, rate, left),
                )
                window_start, window_steps = time.time(), 0
            if phase_end or (schedule.eval_every and step % schedule.eval_every == 0):
                results = run.evaluate()
                title = f"test metrics after step {step} ({phase} phase)"
                logger.log(
                    {"step": step, "phase": phase, "eval": results},
                    metrics_lib.format_table(results, title),
                )
            if phase_end or (schedule.checkpoint_every and step % schedule.checkpoint_every == 0):
                run.checkpointer.save(run.state, run.meta, results if phase_end else None)
    except KeyboardInterrupt:
        run.checkpointer.save(run.state, run.meta)
        run.checkpointer.wait()
        logger.log(
            {"event": "interrupted", "step": step},
            f"interrupted: saved step {step}; rerun the same command to resume",
        )
        raise
    finally:
        run.checkpointer.wait()
    if results is None:  # nothing left to train: report the restored model
        results = run.evaluate()
        logger.log(
            {"step": step, "eval": results},
            metrics_lib.format_table(results, f"test metrics at step {step}"),
        )
    run.checkpointer.close()
    return results


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
    """Restores the latest (or `step`'s) checkpoint in `workdir` and evaluates it on test."""
    run = Run(config, workdir)
    if not run.restore(step):
        raise ValueError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first")
    results = run.evaluate()
    at = int(run.state.step)
    Logger(workdir).log(
        {"event": "eval", "step": at, "eval": results},
        metrics_lib.format_table(results, f"test metrics of the checkpoint at step {at}"),
    )
    run.checkpointer.close()
    return results


def _seconds_left(config, step: int, rate: float, measured_in: str) -> float:
    """An estimate from the current rate; an adversarial update is taken to cost about as
    much as the BCE steps on its batches, until its own rate has been measured."""
    bce = config.schedule.bce_steps
    adversarial_left = (
        config.schedule.bce_steps + config.schedule.adversarial_steps - max(step, bce)
    )
    if measured_in == "bce":
        return (max(bce - step, 0) + adversarial_left * batches_per_update(config)) / rate
    return adversarial_left / rate
