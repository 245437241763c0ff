"""The training loop: build the state, restore, run both phases, evaluate, checkpoint, log."""

import os
import time

import jax
import jax.numpy as jnp

from jaxgan import checkpoint, evaluate, outputs, pairs, parallel, runtime, steps
from jaxgan import metrics as metrics_lib
from jaxgan import pace as pace_lib
from jaxgan.checkpoint import Checkpointer, metadata
from jaxgan.compiled import CompiledAhead, adversarial_shapes, compile_steps
from jaxgan.config_check import check_config
from jaxgan.data import augment, input_pipeline
from jaxgan.data.datasets import get_source
from jaxgan.metric_writer import TENSORBOARD_DIR, MetricWriter
from jaxgan.models import create_generator
from jaxgan.models.critic import create_critic
from jaxgan.state import create_train_state, make_optimizer, snapshot_feature_extractor

# The files a run writes in its workdir besides checkpoints/ and tensorboard/.
WORKDIR_FILES = ("eval.json", "metrics.jsonl")


def batches_per_update(config) -> int:
    """Batches one adversarial update reads (`pairs.batches_per_update`)."""
    return pairs.batches_per_update(config.method.n_critic, config.method.negative_sampling)


def batches_consumed(config, step: int) -> int:
    """The training stream's position after `step` generator updates."""
    supervised = min(step, config.schedule.supervised_steps)
    return supervised + (step - supervised) * batches_per_update(config)


class Run:
    """Everything built from a checked config (`check_config`): data source, models, compiled
    steps, initial state."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir = config, workdir
        self.source = get_source(config.data)
        self.num_labels = self.source.num_labels
        self.mesh = parallel.create_mesh()
        self.generator = create_generator(config.model, self.num_labels)
        self.critic = create_critic(config)
        generator_tx = make_optimizer(config.optim.generator_learning_rate, config.optim)
        critic_tx = make_optimizer(config.optim.critic_learning_rate, config.optim)
        self.ctx = steps.StepContext.from_config(
            config, self.generator, self.critic, generator_tx, critic_tx
        )
        self.state = self._init_state(generator_tx, critic_tx)
        self.meta = metadata(config, self.source.class_names)
        self.checkpointer = Checkpointer(workdir, config.schedule.keep_checkpoints)
        self.classifier = evaluate.Classifier(config, self.source.class_names, self.mesh)
        self.saved_meta = {}  # the restored checkpoint's metadata
        self.compiled = compile_steps(self.ctx, self.mesh)

    def _init_state(self, generator_tx, critic_tx):
        """The initial state, built by two jitted functions (G's variables, then everything
        else) rather than op by op. Only the first traces G: the critic's initialisers need
        f_ext's feature shape, not its values, so the second compiles no pass of G."""
        config = self.config
        g_key, critic_key, run_key = jax.random.split(jax.random.key(config.seed), 3)
        size = config.data.image_size
        image = jnp.zeros((1, size, size, 3), jnp.float32)
        repl = parallel.replicated(self.mesh)

        def init_generator(key):
            return self.generator.init({"params": key, "dropout": key}, image, train=False)

        g_variables = jax.jit(init_generator, out_shardings=repl)(g_key)
        if config.model.pretrained:
            from jaxgan.weights import load_pretrained

            g_variables = load_pretrained(config.model.pretrained, g_variables, config.model.name)
        pretrained_f_ext = config.method.feature_extractor == "pretrained"
        uses_ema = evaluate.uses_ema(config)
        feature_shape = jax.eval_shape(
            lambda v: self.generator.apply(v, image, train=False, features_only=True), g_variables
        )

        def init_rest(g_variables, critic_key, run_key):
            features = jnp.zeros(feature_shape.shape, feature_shape.dtype)
            labels = jnp.zeros((1, self.num_labels))
            critic_params = self.critic.init(critic_key, labels, features)["params"]
            return create_train_state(
                run_key,
                g_variables,
                critic_params,
                generator_tx,
                critic_tx,
                pretrained_f_ext,
                uses_ema,
            )

        return jax.jit(init_rest, out_shardings=repl)(g_variables, critic_key, run_key)

    def restore(self, extends_supervised_phase: bool = False) -> bool:
        """Resumes from the newest checkpoint that restores; False if the workdir has none.
        Refuses one made with another model, schedule, critic or optimiser (one line);
        `extends_supervised_phase`: see `train_and_evaluate`."""
        if self.checkpointer.latest_step() is None:
            return False
        self.state, self.saved_meta = self.checkpointer.restore(
            self.state, self.meta, resume=True, extends_supervised_phase=extends_supervised_phase
        )
        return True

    def evaluate(self) -> dict:
        """The evaluation report of the current state (eval.json's content, `evaluate`)."""
        report = evaluate.evaluate(
            self.classifier, self.source, evaluate.eval_variables(self.state)
        )
        return {"step": int(self.state.step), **report}


def _compilation_left(adversarial, first_seconds: dict) -> float:
    """Seconds the loop may still wait at the phase switch for the adversarial update's
    compilation running ahead: the supervised step's compilation time (its first call) times
    the update's cost in compilation (about 1.5 of it), less the time it has run."""
    if not isinstance(adversarial, CompiledAhead) or adversarial.done():
        return 0.0
    expected = 1.5 * first_seconds.get("supervised", 0.0)
    return max(expected - (time.perf_counter() - adversarial.started), 0.0)


def _progress_line(step, total, phase, values, rate, seconds_left):
    shown = " ".join(f"{k}={float(v):.4f}" for k, v in sorted(values.items()))
    rate_text = f"{rate:.2f} steps/s" if rate is not None else "rate pending"
    left = f"{seconds_left / 60:.1f} min left" if seconds_left == seconds_left else "? min left"
    return f"step {step}/{total} [{phase}] {shown} | {rate_text}, {left}"


class StepInputs(tuple):
    """A step's device inputs, with `input_state`: where the input stream stands once they
    are consumed (saved with the checkpoint of that step; see `step_batches`)."""

    input_state: dict | None = None


def step_batches(config, source, step: int, saved_input: dict | None = None):
    """The host batches of every step from `step` on, as (phase, batches, input_state) with
    the batches the phase's compiled step takes, uint8 images not yet augmented: (batch,)
    supervised, (critic, generator) adversarial.

    One Grain dataset per phase, both on the same records (so a cached split is read and
    held once): the supervised phase's global batches 0, 1, ...; the adversarial phase's
    updates, update u reading the `batches_per_update` batches from
    `batches_consumed(supervised_steps + u)` on (`input_pipeline.update_dataset`).

    `input_state` ({"phase", "offset", "position", "grain"}) is the Grain iterator's state
    after the item: the item is element `position` of its phase's dataset, read by an
    iterator over the phase's elements from `offset` on. Training saves it with every
    checkpoint; resuming, `saved_input` restores the iterator from it (`set_state`). The step
    counters stay the source of truth: a saved state that disagrees with them (another
    phase position than `step` implies) is refused in one line (`InputStateError`), and
    without one the phase's dataset is read from the counters' position."""
    schedule, method = config.schedule, config.method
    total = schedule.supervised_steps + schedule.adversarial_steps
    train = input_pipeline.train_records(source, config.data)
    phases = []
    if step < schedule.supervised_steps:
        dataset = input_pipeline.train_dataset(
            source, config.data, schedule.batch_size, config.seed, 0,
            records=train, num_batches=schedule.supervised_steps,
        )  # fmt: skip
        phases.append(("supervised", dataset, step))
    start = max(step, schedule.supervised_steps)
    if start < total:
        dataset = input_pipeline.update_dataset(
            source, config.data, schedule.batch_size, config.seed,
            batches_consumed(config, schedule.supervised_steps), schedule.adversarial_steps,
            method.n_critic, pairs.pair_kinds(method.negative_sampling), records=train,
        )  # fmt: skip
        phases.append(("adversarial", dataset, start - schedule.supervised_steps))
    return _phase_items(phases, config.data, saved_input)


class InputStateError(ValueError):
    """A checkpoint's saved input state disagrees with its step counters."""


def _phase_items(phases, data_config, saved_input):
    for phase, dataset, position in phases:
        offset = position
        saved = saved_input if saved_input and saved_input.get("phase") == phase else None
        if saved is None and position and saved_input:
            raise InputStateError(
                f"the checkpoint's input stream stands in its {saved_input.get('phase')} phase "
                f"but its step counters put it at element {position} of the {phase} phase: "
                "the checkpoint is inconsistent; train in a fresh --workdir"
            )
        if saved is not None:
            if saved.get("position") != position:
                raise InputStateError(
                    f"the checkpoint's input stream stands at element {saved.get('position')} "
                    f"of the {phase} phase but its step counters put it at element {position}: "
                    "the checkpoint is inconsistent; train in a fresh --workdir"
                )
            offset = saved["offset"]
        iterator = input_pipeline.iterate(dataset[offset:], data_config)
        if saved is not None:
            iterator.set_state(saved["grain"])
        for item in iterator:
            position += 1
            state = {"phase": phase, "offset": offset, "position": position}
            yield (
                phase,
                item if phase == "adversarial" else (item,),
                {**state, "grain": iterator.get_state()},
            )
        saved_input = None


def input_at(config, step: int, input_state: dict | None) -> dict | None:
    """`input_state` if it is where the stream stands after `step` updates, else None (the
    counters then say where a resume reads from)."""
    if input_state is None:
        return None
    supervised = config.schedule.supervised_steps
    phase, position = ("supervised", step) if step <= supervised else (
        "adversarial", step - supervised)  # fmt: skip
    if (input_state.get("phase"), input_state.get("position")) != (phase, position):
        return None
    return input_state


def to_devices(run, item):
    """(phase, host batches, input state) -> (phase, StepInputs): global arrays laid out as
    the compiled step wants, the images augmented and normalised on the devices
    (`augment.train_batch`, keyed by each example's seed, epoch and position)."""
    phase, batches, input_state = item
    transform = augment.Transform.from_config(run.config.data)

    def on_devices(batch, sharding):
        batch = parallel.to_global(batch, sharding)
        return augment.train_batch(batch, transform, run.config.seed)

    if phase == "supervised":
        inputs = StepInputs((on_devices(batches[0], run.compiled.data),))
    else:
        critic, generator = batches
        inputs = StepInputs(
            (
                {kind: on_devices(b, run.compiled.stacked) for kind, b in critic.items()},
                on_devices(generator, run.compiled.data),
            )
        )
    inputs.input_state = input_state
    return phase, inputs


def take_feature_extractor_if_due(state, mesh, from_ema: bool = False):
    """The adversarial phase's f_ext: a snapshot of G now, unless the state records that it
    has one (taken earlier, or the pretrained backbone). The loop asks whenever it enters the
    phase, at the boundary or when resuming inside it. `from_ema` (`method.snapshot_ema`): the
    snapshot is G's moving average."""
    if bool(jax.device_get(state.f_ext_taken)):
        return state
    take = jax.jit(
        snapshot_feature_extractor, static_argnums=1, out_shardings=parallel.replicated(mesh)
    )
    return take(state, from_ema)


class NonFiniteError(ValueError):
    """Training diverged: a loss or gradient norm stopped being finite."""


def _check_finite(pending: list, config, checkpointer) -> None:
    """Reads the "nonfinite" flags of the updates since the last check, [(step, phase, flag)]
    still on the device, and stops the run at the first bad one: called before anything is
    logged, evaluated or saved, so a bad state is never checkpointed."""
    flags = jax.device_get([flag for _, _, flag in pending])
    bad = [
        (step, phase, int(flag))
        for (step, phase, _), flag in zip(pending, flags, strict=True)
        if flag
    ]
    pending.clear()
    if not bad:
        return
    step, phase, bits = bad[0]
    # Critic first: its updates run first in an adversarial update, and its NaN reaches G.
    named = ((steps.CRITIC_FAILED, "the critic's"), (steps.GENERATOR_FAILED, "the generator's"))
    networks = " and ".join(name for bit, name in named if bits & bit)
    checkpointer.wait()
    optim = config.optim
    latest = checkpointer.latest_step()
    kept = (
        f"nothing after the checkpoint at step {latest} was saved"
        if latest is not None
        else "no checkpoint was saved"
    )
    raise NonFiniteError(
        f"training diverged at step {step} ({phase} phase): {networks} loss or gradient "
        f"norm is not finite (optim.generator_learning_rate={optim.generator_learning_rate}, "
        f"optim.critic_learning_rate={optim.critic_learning_rate}); {kept}; lower the "
        "learning rates and rerun to resume from there"
    )


def train_and_evaluate(config, workdir: str, extends_supervised_phase: bool = False) -> dict:
    """Trains (resuming from `workdir` if it holds a checkpoint), evaluating at the end of each
    phase; returns {phase: test metrics} for each phase that has ended ("supervised",
    "adversarial"; a phase that ended in an earlier run reports what was recorded then) and
    writes the last evaluation's report to `<workdir>/eval.json`.

    A resume with another schedule is refused, except with `extends_supervised_phase`: a
    checkpoint inside its supervised phase then continues into a longer supervised phase (the
    result is the run trained with that length at once; `experiments/seed_table.py` grows its
    no-critic runs this way)."""
    check_config(config)  # the door: everything below trusts the config
    runtime.enable_compilation_cache(config.compilation_cache)  # before anything compiles
    checkpoint.check_workdir(workdir)  # before any data is built: a blocked or read-only path
    outputs.check_writable(workdir, WORKDIR_FILES, [TENSORBOARD_DIR])
    with outputs.one_writer(workdir, "training"):  # one run per workdir, for its whole life
        return _train_and_evaluate(config, workdir, extends_supervised_phase)


def _train_and_evaluate(config, workdir: str, extends_supervised_phase: bool) -> dict:
    if os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)):
        resumed = Checkpointer(workdir, config.schedule.keep_checkpoints, read_only=True)
        try:  # refused before anything is built
            resumed.check_resume(metadata(config), extends_supervised_phase)
        finally:
            resumed.close()
    run = Run(config, workdir)
    checkpoint.check_workdir(workdir, needed_bytes=checkpoint.state_bytes(run.state))
    writer = MetricWriter(workdir)
    schedule = config.schedule
    total = schedule.supervised_steps + schedule.adversarial_steps
    if run.restore(extends_supervised_phase):
        writer.write(
            {"event": "resumed", "step": int(run.state.step)},
            f"resumed from the checkpoint at step {int(run.state.step)} in {workdir}",
        )
    phase_results = dict(run.saved_meta.get("phase_results", {}))
    step = int(run.state.step)
    writer.write(
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
        f"{schedule.supervised_steps} supervised ({config.method.classification_loss}) + "
        f"{schedule.adversarial_steps} adversarial steps",
    )
    kinds = pairs.pair_kinds(config.method.negative_sampling)
    prior = pace_lib.adversarial_cost_prior(config.method.n_critic, len(kinds))
    pace = pace_lib.Pace()
    compiled = {"supervised": run.compiled.supervised, "adversarial": run.compiled.adversarial}
    first_call = set(compiled)  # a phase's first step in this process compiles
    first_seconds = {}  # the first call's time, per phase (the supervised one compiles)
    report, nonfinite, in_adversarial_phase = None, [], False
    input_state = run.saved_meta.get("input")
    batches = parallel.DevicePrefetch(
        step_batches(config, run.source, step, run.saved_meta.get("input")),
        lambda item: to_devices(run, item),
        config.data.device_prefetch,
    )
    try:
        for phase, step_inputs in batches:
            if phase == "adversarial" and not in_adversarial_phase:
                run.state = take_feature_extractor_if_due(
                    run.state, run.mesh, config.method.snapshot_ema
                )
                in_adversarial_phase = True
            if phase in first_call:  # compilation: timed apart, not counted as a step
                first_call.discard(phase)
                jax.block_until_ready(run.state)
                started = time.perf_counter()
                run.state, values = compiled[phase](run.state, *step_inputs)
                jax.block_until_ready(values)
                first_seconds[phase] = time.perf_counter() - started
                writer.write(
                    {"event": "first_step", "of_phase": phase, "seconds": first_seconds[phase]},
                    f"{phase} phase: first step in {first_seconds[phase]:.1f} s "
                    + ("(compiled ahead)" if isinstance(compiled[phase], CompiledAhead)
                       else "(compilation included)"),
                )  # fmt: skip
                if phase == "supervised" and step + 1 < total:  # compile the next phase now
                    shapes = adversarial_shapes(
                        run.compiled, run.state, step_inputs[0], config.method.n_critic, kinds
                    )
                    compiled["adversarial"] = CompiledAhead(run.compiled.adversarial, *shapes)
                pace.restart()  # the wait for the first batches and the compilation are no step's
            else:
                run.state, values = compiled[phase](run.state, *step_inputs)
                pace.step()
            step += 1
            input_state = step_inputs.input_state
            values = dict(values)
            nonfinite.append((step, phase, values.pop("nonfinite")))
            phase_end = step in (schedule.supervised_steps, total)
            logging_due = schedule.log_every and (step % schedule.log_every == 0 or phase_end)
            eval_due = phase_end or (schedule.eval_every and step % schedule.eval_every == 0)
            every = schedule.checkpoint_every
            save_due = phase_end or (every and step % every == 0)
            if logging_due or eval_due or save_due:
                _check_finite(nonfinite, config, run.checkpointer)  # waits for the steps
            if logging_due:
                values = jax.device_get(values)
                rate = pace.report(phase)
                left = pace.seconds_left(
                    max(schedule.supervised_steps - step, 0),
                    total - max(step, schedule.supervised_steps),
                    prior,
                ) + _compilation_left(compiled["adversarial"], first_seconds)
                record = {"step": step, "phase": phase, **values}
                if rate is not None:
                    record["steps_per_s"] = rate
                writer.write(record, _progress_line(step, total, phase, values, rate, left))
            with pace.excluded():
                if eval_due:
                    report = _evaluate_and_log(run, writer, f"after step {step} ({phase} phase)")
                    if phase_end:
                        phase_results[phase] = report["metrics"]
                if save_due:  # asynchronous: Orbax copies the state, then writes in the back
                    run.checkpointer.save(
                        run.state,
                        run.meta,
                        report["metrics"] if eval_due else None,
                        thresholds=report["thresholds"] if eval_due else None,
                        phase_results=phase_results,
                        input=input_state,
                    )
        if step < total:
            raise RuntimeError(f"the training stream ended at step {step} of {total}")
    except KeyboardInterrupt:
        _check_finite(nonfinite, config, run.checkpointer)  # never save a diverged state
        run.checkpointer.save(
            run.state,
            run.meta,
            phase_results=phase_results,
            input=input_at(config, int(jax.device_get(run.state.step)), input_state),
        )
        run.checkpointer.wait()
        writer.write(
            {"event": "interrupted", "step": step},
            f"interrupted: saved step {step}; rerun the same command to resume",
        )
        raise
    finally:
        batches.close()
        run.checkpointer.wait()
        writer.close()
    if report is None:  # nothing left to train: report the restored model
        report = _evaluate_and_log(run, writer, f"at step {step}")
        phase_results[_phase_of(config, step)] = report["metrics"]
    evaluate.write_report(workdir, report)
    writer.close()
    run.checkpointer.close()
    return phase_results


def _phase_of(config, step: int) -> str:
    return "supervised" if step <= config.schedule.supervised_steps else "adversarial"


def _evaluate_and_log(run: Run, writer: MetricWriter, when: str) -> dict:
    report = run.evaluate()
    writer.write(
        {"step": report["step"], "phase": _phase_of(run.config, report["step"]),
         "eval": report["metrics"]},
        metrics_lib.format_table(report["metrics"], f"test metrics {when}"),
    )  # fmt: skip
    return report
