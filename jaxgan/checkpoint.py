"""Orbax checkpoints of the whole train state, with metadata that says what made them.

A checkpoint holds both networks, both optimiser states, the frozen f_ext, the step counters
and the base RNG key; the data position is derived from the step counters (see
`input_pipeline`), so nothing else is needed to continue exactly. Its metadata records what a
reader needs without the training data: the config, the class names in label order, the input
size and normalisation, the backbone, and (after an evaluation) the metrics and the thresholds
chosen on the validation split. It also records the fields whose change makes the checkpoint
unusable (another model or label set) or a resume wrong (another schedule, critic or
optimiser), so that neither happens silently.

Damage is survived, never hidden: a step folder with no saved state in it (a crash mid-save)
is ignored; a newest checkpoint that fails to restore is reported in one line and
the previous one is used, the damaged folder moved aside under `<workdir>/damaged_checkpoints`
(or, for a reader that must not write, named in the message). Besides the newest
`keep_checkpoints`, the checkpoint with the best validation C-F1 is kept.
"""

import errno
import json
import logging
import os
import shutil
import sys
import time

import flax.serialization
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxgan import outputs
from jaxgan.choices import MISSING, RENAMED_FIELDS, field_at, renamed_field
from jaxgan.state import TrainState

# The fields whose change makes an old checkpoint unusable, for training and evaluation alike.
IDENTITY_FIELDS = ("model", "model_width", "num_labels", "data", "conditional")
# The fields whose change would make a resumed run differ from an uninterrupted one: the data
# position (a function of these and the step), the critic's shape and the optimiser's state.
RESUME_FIELDS = (
    "seed",
    "schedule.batch_size",
    "schedule.supervised_steps",
    "method.n_critic",
    "method.negative_sampling",
    "critic.embed_dim",
    "critic.hidden_dim",
    "critic.num_layers",
    "optim.optimizer",
    "model.ema_decay",
)
# Resume fields added after checkpoints were first made, with the value configs recorded
# before them imply (a checkpoint's recorded config is read back to evaluate it).
LATER_FIELDS = {"model.ema_decay": 0.0}
# Train-state fields renamed since checkpoints were first made: new name -> the old one.
RENAMED_STATE_FIELDS = {
    "critic_params": "d_params",
    "critic_opt_state": "d_opt_state",
    "critic_updates": "d_step",
}
BEST_METRIC = "validation_CF1"  # what `best` ranks checkpoints by
COMPLETION_MARKER = "_CHECKPOINT_METADATA"  # Orbax writes it last, when a save is complete
CHECKPOINT_DIR = "checkpoints"  # under the workdir
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(ValueError):
    """A checkpoint problem the user can act on; the message is one line."""


def recorded_field(config, dotted: str):
    """A resume field of `config`, a recorded one included: a field added later
    (`LATER_FIELDS`) reads as the value configs recorded before it imply."""
    if dotted == "optim.optimizer":  # Adam and AdamW keep differently shaped states
        return "adamw" if config.optim.weight_decay else "adam"
    value = field_at(config, dotted)
    return LATER_FIELDS[dotted] if value is MISSING else value  # KeyError for any other


def upgrade_recorded(saved: dict) -> dict:
    """A checkpoint's metadata with today's field names (`choices.RENAMED_FIELDS`) in its
    recorded config and resume fields, so that checkpoints made before a rename still evaluate
    and resume."""
    saved = dict(saved)
    if isinstance(saved.get("resume"), dict):
        saved["resume"] = {renamed_field(k) or k: v for k, v in saved["resume"].items()}
    if isinstance(saved.get("config"), dict):
        config = json.loads(json.dumps(saved["config"]))  # a deep copy
        for old, new in RENAMED_FIELDS.items():
            *old_parents, old_name = old.split(".")
            *new_parents, new_name = new.split(".")
            parent = config
            for part in old_parents:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and old_name in parent:
                target = config
                for part in new_parents:
                    target = target.setdefault(part, {})
                target[new_name] = parent.pop(old_name)
        saved["config"] = config
    return saved


def metadata(config, class_names=None) -> dict:
    """What a checkpoint made from `config` records about itself (JSON). Without
    `class_names` (before the dataset is read): what the config alone says."""
    labels = {} if class_names is None else {
        "num_labels": len(class_names),
        "class_names": list(class_names),
    }  # fmt: skip
    return {
        "model": config.model.name,
        "model_width": config.model.width,
        **labels,
        "data": config.data.name,
        "conditional": config.method.conditional,
        "input": {
            "image_size": config.data.image_size,
            "normalization": config.data.normalization,
        },
        "resume": {name: recorded_field(config, name) for name in RESUME_FIELDS},
        "config": json.loads(config.to_json_best_effort()),
    }


def check_options(schedule) -> None:
    """Retention that could delete every checkpoint is refused before anything runs."""
    if schedule.keep_checkpoints < 1:
        raise CheckpointError(
            f"schedule.keep_checkpoints must be >= 1 (got {schedule.keep_checkpoints}): the "
            "newest checkpoints are what a rerun resumes from"
        )


def _orbax_metric(value) -> float:
    return float("-inf") if value is None else float(value)


def _is_disk_full(error: BaseException) -> bool:
    return (
        isinstance(error, OSError) and error.errno == errno.ENOSPC
    ) or "RESOURCE_EXHAUSTED" in str(error)


class _DiskFullRecords(logging.Filter):
    """Drops the background logs of a full disk, each with its traceback: Orbax's own (through
    absl's logger) and asyncio's "exception was never retrieved" for every failed write of
    Orbax's asyncio tasks (hundreds of lines, at exit). The save that failed is reported once,
    in one line, by `Checkpointer`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.name == "absl" and "orbax" not in record.pathname:
            return True  # only Orbax's own records among absl's
        text = record.getMessage() + str(record.exc_info[1] if record.exc_info else "")
        return not ("RESOURCE_EXHAUSTED" in text or "No space left" in text)


# A logger's filters see the records logged through it, not those its children pass up.
for _name in ("absl", "asyncio"):
    logging.getLogger(_name).addFilter(_DiskFullRecords())


def _drop_late_completions(unraisable, previous=sys.unraisablehook) -> None:
    """sys.unraisablehook: when a save fails (a full disk), Orbax closes its asyncio loop while
    TensorStore still has writes in flight, and each one's completion, finding the loop
    closed, is reported as an unraisable 'Event loop is closed' with its traceback (hundreds
    of lines around the save's one-line error). Such a completion has nowhere to go anyway:
    it is dropped. Every other unraisable error goes to the previous hook."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    previous(unraisable)


sys.unraisablehook = _drop_late_completions


MAX_META_BYTES = 16 << 20  # a config, class names and per-class thresholds: far less
MAX_META_DEPTH = 32  # the recorded config nests 3 deep
MAX_LABELS = 100_000


class MetadataError(CheckpointError):
    """A checkpoint's metadata that is too large, not JSON or of the wrong shape. `reason`
    names the field; the message adds the checkpoint and the fix."""

    def __init__(self, where: str, reason: str):
        self.reason = reason
        super().__init__(
            f"{where} has unusable metadata: {reason}; it is damaged or was not written by "
            "jaxgan: pass another --checkpoint_step or train again"
        )


def _too_deep() -> str:
    return f"metadata is nested more than {MAX_META_DEPTH} levels deep"


def _depth(value) -> int:
    """How deep lists and objects nest in parsed JSON (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_META_DEPTH:  # deeper is refused whatever lies below
                stack.extend(
                    (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
                )
    return deepest


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_name(value) -> bool:
    return isinstance(value, str) and value.strip() != "" and value.isprintable()


def recorded_problem(saved: dict) -> str | None:
    """What is wrong with the known fields of a checkpoint's metadata, naming the field (None
    if nothing). A field may be absent (older checkpoints lack some), never of another type."""
    from jaxgan.config_check import MAX_IMAGE_SIZE

    def wrong(field, wanted):
        return f"{field} must be {wanted}, not {_shown(field_at_path(saved, field))}"

    for field in ("model", "data"):
        if field in saved and not _is_name(saved[field]):
            return wrong(field, "a non-empty string")
    if "model_width" in saved and not (_is_int(saved["model_width"]) and saved["model_width"] > 0):
        return wrong("model_width", "a positive integer")
    labels = saved.get("num_labels")
    if "num_labels" in saved and not (_is_int(labels) and 1 <= labels <= MAX_LABELS):
        return wrong("num_labels", f"an integer in [1, {MAX_LABELS}]")
    if "conditional" in saved and not isinstance(saved["conditional"], bool):
        return wrong("conditional", "true or false")
    count = f"{labels} " if _is_int(labels) else ""
    if "class_names" in saved:
        names = saved["class_names"]
        if (
            not isinstance(names, list)
            or not all(_is_name(n) for n in names)
            or (_is_int(labels) and len(names) != labels)
        ):
            return wrong("class_names", f"a list of {count}unique non-empty one-line strings")
        seen = set()
        for name in names:
            if name in seen:
                return f"class_names repeats {name!r}: each class needs its own name"
            seen.add(name)
    for section in ("input", "resume", "config", "metrics", "phase_results"):
        if section in saved and not isinstance(saved[section], dict):
            return wrong(section, "a JSON object")
    # (The recorded config's own fields go through the config door: evaluate.config_of.)
    size = field_at_path(saved, "input.image_size")
    if size is not MISSING and not (_is_int(size) and 1 <= size <= MAX_IMAGE_SIZE):
        return wrong("input.image_size", f"an integer in [1, {MAX_IMAGE_SIZE}]")
    for name, value in saved.get("metrics", {}).items():
        if value is not None and not _is_number(value):
            return wrong(f"metrics.{name}", "a number")
    thresholds = saved.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, dict):
            return wrong("thresholds", "a JSON object")
        for name in ("configured", "CF1", "OF1"):
            value = thresholds.get(name, 0.5)
            if not (_is_number(value) and 0 <= value <= 1):
                return wrong(f"thresholds.{name}", "a number in [0, 1]")
        per_class = thresholds.get("per_class", [])
        if not (
            isinstance(per_class, list)
            and all(_is_number(t) and 0 <= t <= 1 for t in per_class)
            and (not per_class or not _is_int(labels) or len(per_class) == labels)
        ):
            return wrong("thresholds.per_class", f"a list of {count}numbers in [0, 1]")
    return None


def field_at_path(record: dict, dotted: str):
    """`record`'s field at the dotted path, or MISSING."""
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return MISSING
        record = record[part]
    return record


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_workdir(workdir: str, needed_bytes: int = 0) -> None:
    """Before training: the workdir must be a writable folder with room for a checkpoint.

    One line each for a path blocked by a file, a read-only or unwritable folder, and a disk
    with less free space than `needed_bytes` (about one checkpoint).
    """
    checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
    try:
        outputs.check_writable(workdir, folders=(CHECKPOINT_DIR,))
        outputs.check_writable(checkpoints)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    free = shutil.disk_usage(checkpoints).free
    if needed_bytes and free < needed_bytes:
        raise CheckpointError(
            f"only {free / 2**20:.0f} MiB free on the disk holding {workdir}, and a checkpoint "
            f"needs about {needed_bytes / 2**20:.0f} MiB; free space or choose another --workdir"
        )


def state_bytes(state) -> int:
    """The bytes a checkpoint of `state` takes, about (its arrays, uncompressed)."""
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))


# Orbax saves an array that several devices hold in slices, one per device, each cut by an
# eager operation. For a model state's many small arrays the cuts cost more than the writes
# they spread, so arrays under this size are written whole, from one device.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _type_handlers():
    """Orbax's default type handlers, with `MIN_REPLICA_SLICE_BYTES` for arrays."""
    handlers = []
    for kind in ocp.type_handlers.supported_types():
        handler = ocp.type_handlers.get_type_handler(kind)
        if kind is jax.Array:
            handler = ocp.type_handlers.ArrayHandler(
                array_metadata_store=handler._array_metadata_store,  # no public accessor
                min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
            )
        handlers.append((kind, handler))
    return ocp.type_handlers.create_type_handler_registry(*handlers)


class Checkpointer:
    """Saves and restores `TrainState`s under `<workdir>/checkpoints`.

    `read_only` readers (evaluation, prediction, diagnostics) never create, move or delete
    anything.
    """

    def __init__(self, workdir: str, max_to_keep: int = 3, read_only: bool = False):
        if max_to_keep < 1:
            raise CheckpointError(f"schedule.keep_checkpoints must be >= 1, got {max_to_keep}")
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, CHECKPOINT_DIR)
        self.read_only = read_only
        if read_only and not os.path.isdir(self.directory):
            raise CheckpointError(f"no checkpoint in {self.directory}; train first")
        if not read_only:
            self._move_aside_incomplete()
        policy = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(n=max_to_keep),
                checkpoint_managers.BestN(
                    get_metric_fn=lambda m: _orbax_metric(m.get(BEST_METRIC)),
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        # A reader's manager never saves, so it never deletes; Orbax's own read_only mode
        # would only add warnings.
        options = ocp.CheckpointManagerOptions(
            create=not read_only,
            preservation_policy=None if read_only else policy,
            best_fn=lambda m: _orbax_metric(m.get(BEST_METRIC)),
            best_mode="max",
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.PyTreeCheckpointHandler(type_handler_registry=_type_handlers()),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    # -- which steps exist ------------------------------------------------------------------

    def _is_complete(self, step: int) -> bool:
        """A folder with the state's arrays in it. Orbax writes its marker file after the
        folder appears, so a kill can leave a good checkpoint without it; whether such a
        folder really restores is found out by restoring it (see `restore_tree`)."""
        folder = os.path.join(self.directory, str(step))
        state = os.path.join(folder, "state")
        return os.path.isfile(os.path.join(folder, COMPLETION_MARKER)) or (
            os.path.isdir(state) and bool(os.listdir(state))
        )

    def _move_aside_incomplete(self) -> None:
        """Step folders a crash left with no saved state in them go aside, reported,
        so that Orbax never takes them for the newest checkpoint."""
        if not os.path.isdir(self.directory):
            return
        for name in sorted(os.listdir(self.directory)):
            if name.isdigit() and not self._is_complete(int(name)):
                where = self._move_aside(int(name))
                _report(f"ignored the incomplete checkpoint folder {name} (moved to {where})")

    def all_steps(self) -> list[int]:
        """Steps with a complete checkpoint, oldest first."""
        return sorted(s for s in self.manager.all_steps() if self._is_complete(s))

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int:
        """The step with the highest validation C-F1 (the newest among equals)."""
        scored = []
        for step in self.all_steps():
            try:
                value = self.read_meta(step).get("metrics", {}).get(BEST_METRIC)
            except Exception:  # a damaged checkpoint cannot be the best one
                continue
            if value is not None:
                scored.append((float(value), step))
        if not scored:
            raise CheckpointError(
                f"no checkpoint in {self.directory} has a validation C-F1 yet (they are "
                "recorded at evaluations); pass a step number or train on"
            )
        return max(scored)[1]

    def resolve_step(self, step: int | str | None) -> int | None:
        """None (newest), "best", "latest" or a number -> a step number (None if none)."""
        if step is None or step == "latest":
            return self.latest_step()
        if step == "best":
            return self.best_step()
        try:
            number = int(step)
        except ValueError:
            raise CheckpointError(
                f"--checkpoint_step={step!r} is not a step number, 'best' or 'latest'"
            ) from None
        if number not in self.all_steps():
            raise CheckpointError(
                f"no checkpoint at step {number} in {self.directory}; have {self.all_steps()}"
            )
        return number

    # -- saving -----------------------------------------------------------------------------

    def save(self, state: TrainState, meta: dict, metrics: dict | None = None, **extra) -> None:
        """Saves `state` with `meta`, the evaluation `metrics` (if one was made at this step)
        and any `extra` JSON fields (e.g. thresholds, phase results)."""
        step = int(jax.device_get(state.step))
        self._saving = step
        record = {**meta, "metrics": metrics or {}, **extra}
        ranking = {BEST_METRIC: (metrics or {}).get(BEST_METRIC)}
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeSave(flax.serialization.to_state_dict(state)),
                    meta=ocp.args.JsonSave(record),
                ),
                metrics={k: v for k, v in ranking.items() if v is not None},
                force=True,
            )
        except Exception as error:
            raise self._save_error(step, error) from None

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as error:
            raise self._save_error(getattr(self, "_saving", None), error) from None

    def _save_error(self, step: int | None, error: BaseException) -> BaseException:
        at = f"step {step}" if step is not None else "a checkpoint"
        resume = self.latest_step()
        then = f"a rerun resumes from step {resume}" if resume is not None else "nothing was saved"
        if _is_disk_full(error):
            return CheckpointError(
                f"disk full while saving {at} to {self.directory}; free space and rerun ({then})"
            )
        if isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return CheckpointError(
                f"cannot write {at} to {self.directory} ({error.strerror}); "
                f"make it writable and rerun ({then})"
            )
        return error

    # -- reading ----------------------------------------------------------------------------

    def read_meta(self, step: int) -> dict:
        """The metadata of the checkpoint at `step`, read as the input it is: at most
        `MAX_META_BYTES`, nested at most `MAX_META_DEPTH` deep, its known fields typed
        (`check_recorded`); MetadataError (one line) otherwise."""
        where = f"the checkpoint at step {step} in {self.directory}"
        # Where Orbax's JsonCheckpointHandler keeps the "meta" item (read here, bounded,
        # rather than by Orbax's unbounded json.loads of the whole file).
        path = os.path.join(self.directory, str(step), "meta", "metadata")
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_META_BYTES + 1)
        except OSError as error:
            raise MetadataError(where, f"metadata cannot be read ({error.strerror})") from None
        if len(raw) > MAX_META_BYTES:
            raise MetadataError(where, f"metadata is larger than {MAX_META_BYTES:,} bytes")
        try:
            saved = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise MetadataError(where, _too_deep()) from None
        except ValueError as error:  # UnicodeDecodeError included
            raise MetadataError(where, f"metadata is not JSON ({_one_line(error, 80)})") from None
        if _depth(saved) > MAX_META_DEPTH:
            raise MetadataError(where, _too_deep())
        if not isinstance(saved, dict):
            raise MetadataError(where, "metadata is not a JSON object")
        saved = upgrade_recorded(saved)
        problem = recorded_problem(saved)
        if problem:
            raise MetadataError(where, problem)
        return saved

    def _check_meta(
        self, saved: dict, meta: dict, resume: bool, step: int, extends_supervised_phase=False
    ) -> None:
        """Identity fields (those `meta` has) must agree; with `resume`, the resume fields too.
        `extends_supervised_phase`: a checkpoint inside its supervised phase may be continued
        with a longer one (exact: until that phase ends, the data order and the state are the
        same whatever its length)."""
        for field in IDENTITY_FIELDS:
            if field in meta and saved.get(field) != meta.get(field):
                raise CheckpointError(
                    f"the checkpoint in {self.directory} was made with {field}="
                    f"{saved.get(field)!r} but the config asks for {meta.get(field)!r}; "
                    "use a fresh --workdir or the config it was trained with"
                )
        if not resume:
            return
        recorded = saved.get("resume", {})
        for field, value in meta.get("resume", {}).items():
            if (
                extends_supervised_phase
                and field == "schedule.supervised_steps"
                and step <= recorded.get(field, -1) <= value
            ):
                continue
            if field in recorded and recorded[field] != value:  # older checkpoints lack some
                raise CheckpointError(
                    f"cannot resume the run in {self.workdir} with {field}={value!r}: its "
                    f"checkpoints were made with {field}={recorded[field]!r}; pass "
                    f"--config.{field}={recorded[field]!r} or use a fresh --workdir"
                    if field != "optim.optimizer"
                    else f"cannot resume the run in {self.workdir} with optimizer {value}: its "
                    f"checkpoints were made with {recorded[field]} (optim.weight_decay); "
                    "use the same optim.weight_decay or a fresh --workdir"
                )

    @staticmethod
    def _saved_names(saved: dict | None, abstract: dict) -> dict:
        """{field of `abstract`: its name among the `saved` arrays' metadata}: the old name of
        a renamed field (`RENAMED_STATE_FIELDS`) where the checkpoint was made before the
        rename."""
        saved = saved or {}
        return {
            key: RENAMED_STATE_FIELDS[key]
            if key not in saved and RENAMED_STATE_FIELDS.get(key) in saved
            else key
            for key in abstract
        }

    def _check_shapes(self, step: int, saved: dict | None, abstract: dict) -> None:
        """The `saved` arrays (their metadata, from the checkpoint at `step`) must have the
        shapes the config builds; names the first that differs (a structural mismatch is a
        config change, not damage)."""
        saved_leaves = dict(_flat(saved)) if saved is not None else {}
        if not saved_leaves:
            raise OSError("the index of its arrays is missing")
        wanted = dict(_flat(abstract))
        # Networks before optimiser states: the first difference named is the one to fix.
        for path in sorted(wanted, key=lambda p: "opt_state" in p):
            leaf = wanted[path]
            if path not in saved_leaves and path.startswith("g_ema"):
                raise CheckpointError(
                    f"the checkpoint at step {step} in {self.directory} keeps no moving "
                    "average of G (made without model.ema_decay, or before it existed); "
                    "pass --config.model.ema_decay=0 or use a fresh --workdir"
                )
            if path not in saved_leaves:
                raise CheckpointError(
                    f"the checkpoint at step {step} in {self.directory} has no {path}, which "
                    "the config builds; use a fresh --workdir or the config it was trained with"
                )
            shape = tuple(getattr(saved_leaves[path], "shape", ()) or ())
            if shape != tuple(leaf.shape):
                raise CheckpointError(
                    f"the checkpoint at step {step} in {self.directory} has {path} of shape "
                    f"{shape} but the config builds {tuple(leaf.shape)}; use a fresh --workdir "
                    "or the config it was trained with"
                )

    def restore(
        self,
        target: TrainState,
        meta: dict,
        step: int | str | None = None,
        resume: bool = False,
        extends_supervised_phase: bool = False,
    ) -> tuple[TrainState, dict]:
        """The state saved at `step` (default: newest that restores), laid out like `target`,
        and its metadata.

        Raises CheckpointError, naming the field, when the checkpoint was made for another
        model, label count, dataset or critic kind than `meta` describes (and, with `resume`,
        another schedule, critic width or optimiser; `extends_supervised_phase`: see
        `_check_meta`). A damaged newest checkpoint is reported and skipped; a damaged
        checkpoint asked for by number is an error.
        """
        abstract = jax.tree.map(
            ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(target)
        )
        # A field that holds no arrays (g_ema with EMA off) restores from `abstract` as it is,
        # also from checkpoints made before the field existed.
        restored, saved = self.restore_tree(abstract, meta, step, resume, extends_supervised_phase)
        return flax.serialization.from_state_dict(target, restored), saved

    def restore_tree(
        self,
        abstract: dict,
        meta: dict | None,
        step=None,
        resume: bool = False,
        extends_supervised_phase: bool = False,
    ) -> tuple[dict, dict]:
        """Like `restore` for a state dict; `abstract` may hold only some of the saved keys
        (e.g. only G's variables, for evaluation), and `meta=None` skips the identity check."""
        named = step not in (None, "latest")
        candidates = [self.resolve_step(step)] if named else self.all_steps()[::-1]
        if not candidates or candidates == [None]:
            raise CheckpointError(f"no checkpoint in {self.directory}; train first")
        damaged = []
        for candidate in candidates:
            try:
                saved = self.read_meta(candidate)
            except Exception as error:  # MetadataError included: named by its field
                damaged.append(self.describe_damage(candidate, "its metadata is unreadable", error))
                if named:
                    raise CheckpointError(damaged[-1] + self.other_steps(candidate)) from None
                continue
            if meta is not None:
                self._check_meta(saved, meta, resume, candidate, extends_supervised_phase)
            try:
                # Reading the arrays' index opens every array's store: once per candidate.
                arrays = self.manager.item_metadata(candidate)["state"]
                names = self._saved_names(arrays, abstract)
                as_saved = {names[key]: value for key, value in abstract.items()}
                self._check_shapes(candidate, arrays, as_saved)
            except CheckpointError:
                raise
            except Exception as error:
                damaged.append(
                    self.describe_damage(candidate, "its array index is unreadable", error)
                )
                if named:
                    raise CheckpointError(damaged[-1] + self.other_steps(candidate)) from None
                continue
            try:
                restored = self.manager.restore(
                    candidate,
                    args=ocp.args.Composite(
                        state=ocp.args.PyTreeRestore(
                            item=as_saved,
                            restore_args=ocp.checkpoint_utils.construct_restore_args(as_saved),
                            partial_restore=True,
                        )
                    ),
                )["state"]
                restored = {key: restored[names[key]] for key in abstract}
            except Exception as error:
                damaged.append(self.describe_damage(candidate, "its arrays do not restore", error))
                if named:
                    raise CheckpointError(damaged[-1] + self.other_steps(candidate)) from None
                continue
            for line in damaged:
                _report(f"{line}; using step {candidate}")
            return restored, saved
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores ({'; '.join(damaged)}); "
            + ("rerun to train from scratch" if not self.read_only else "train again")
        )

    def check_resume(self, meta: dict, extends_supervised_phase: bool = False) -> None:
        """Refuses, before anything is built, to resume from the newest readable checkpoint
        with another model, dataset, critic kind, schedule or optimiser (`meta` may lack the
        fields that need the data: those are compared by `restore`)."""
        for step in self.all_steps()[::-1]:
            try:
                saved = self.read_meta(step)
            except Exception:
                continue  # damaged: `restore` reports it and falls back
            self._check_meta(saved, meta, True, step, extends_supervised_phase)
            return

    def other_steps(self, damaged: int) -> str:
        """What to pass instead of a damaged checkpoint's step: the newest other one."""
        others = [step for step in self.all_steps() if step != damaged]
        if not others:
            return ""
        return f"; pass --checkpoint_step={others[-1]} to use the newest other one (have {others})"

    def describe_damage(self, step: int, what: str, error: BaseException) -> str:
        """One line about a damaged step; a writer moves it aside first (never deletes it).
        A library's error is cut short; unusable metadata's reason (the field) is kept whole."""
        if isinstance(error, MetadataError):
            what, error = "unusable metadata", error.reason
        line = f"the checkpoint at step {step} in {self.directory} is damaged ({what}: "
        line += f"{_one_line(error, 120 if isinstance(error, BaseException) else 300)})"
        if self.read_only:
            return line
        return line + f"; moved to {self._move_aside(step)}"

    def _move_aside(self, step: int) -> str:
        aside = os.path.join(self.workdir, DAMAGED_DIR)
        where = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_index() != 0:  # one process moves; the others only skip it
            return where
        os.makedirs(aside, exist_ok=True)
        while os.path.exists(where):
            where += "_"
        shutil.move(os.path.join(self.directory, str(step)), where)
        if hasattr(self, "manager"):
            self.manager.reload()
        return where

    def close(self) -> None:
        self.manager.close()


def _flat(tree) -> list[tuple[str, object]]:
    """(slash-joined key path, leaf) pairs of a nested dict (the saved metadata's form)."""
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict)
    )[0]
    return [("/".join(_key_name(k) for k in path), leaf) for path, leaf in leaves]


def _key_name(key) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _report(line: str) -> None:
    if jax.process_index() == 0:
        print(line, file=sys.stderr, flush=True)
