"""Evaluation and inference, out of the training loop.

A `Classifier` is G with its variables on the device mesh and a compiled forward pass; it is
built from a config and the class names alone, so evaluating or predicting with a checkpoint
(`load_classifier`) needs the checkpoint and its config, never the training split. Labels and
padding masks of an evaluation stay on the host: only images go to the devices.

`evaluation_report` is what `--mode=eval` and the end of each training phase write to
`<workdir>/eval.json`: every metric of the table on the test split, per-class numbers by name,
the thresholds chosen on the validation split and the metrics at them, and the predicted vs
true labels-per-image distribution.
"""

import functools
import json
import os
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgan import metrics as metrics_lib
from jaxgan import parallel, runtime
from jaxgan.base_config import get_base_config
from jaxgan.checkpoint import Checkpointer, CheckpointError, metadata, recorded_field
from jaxgan.choices import ConfigError, field_at
from jaxgan.config_check import check_config
from jaxgan.models import create_generator

# The train-state fields G's evaluation variables are restored from (see `eval_variables`):
# G's own, or with `model.ema_decay` > 0 their moving average (one field holding both).
EVAL_VARIABLE_FIELDS = {"params": "g_params", "batch_stats": "g_batch_stats"}
EMA_FIELD = "g_ema"
THRESHOLD_CHOICES = ("configured", "global", "per_class")


def eval_variables(state) -> dict:
    """G's variables as evaluation and prediction use them: the one place that says which
    they are. The moving average when the state keeps one (`model.ema_decay` > 0)."""
    if getattr(state, EMA_FIELD):
        return getattr(state, EMA_FIELD)
    return {name: getattr(state, field) for name, field in EVAL_VARIABLE_FIELDS.items()}


def uses_ema(config) -> bool:
    """Whether a run of `config` keeps (and evaluates) G's moving average (configs recorded
    before EMA existed: off, `checkpoint.LATER_FIELDS`)."""
    return float(recorded_field(config, "model.ema_decay")) > 0


def probabilities(variables: dict, images: jax.Array, generator, transform) -> jax.Array:
    """p = sigmoid(G(x)) [B, L], with running BatchNorm statistics (pure; jitted below).
    `images`: uint8 prepared squares [B, R, R, 3], each made the model's input by
    `augment.eval_image` (resize, normalisation: the one preparation of evaluation and
    prediction), or float model inputs [B, S, S, 3] already."""
    from jaxgan.data import augment

    if images.dtype == jnp.uint8:
        images = augment.eval_batch(images, transform)
    logits = generator.apply(variables, images, train=False)
    return jax.nn.sigmoid(logits.astype(jnp.float32))


class Classifier:
    """G compiled for inference over the ('data',) mesh; knows nothing of files or datasets.

    `variables` may be passed per call (the training loop evaluates its live state) or held
    (a restored checkpoint). `step` and `thresholds` describe where they came from.
    """

    def __init__(self, config, class_names, mesh=None, variables=None, step=None, saved=None):
        self.config = config
        self.class_names = tuple(class_names)
        self.generator = create_generator(config.model, len(self.class_names))
        self.mesh = mesh if mesh is not None else parallel.create_mesh()
        self.replicated = parallel.replicated(self.mesh)
        self.data_sharding = parallel.batch_sharded(self.mesh)
        self.variables, self.step = variables, step
        self.saved = saved or {}  # the checkpoint's metadata, when restored from one
        self.batch_size = config.schedule.eval_batch_size
        parallel.check_batch_size(self.batch_size, "schedule.eval_batch_size")
        from jaxgan.data import augment

        self.transform = augment.Transform.from_config(config.data)
        self._forward = jax.jit(
            functools.partial(probabilities, generator=self.generator, transform=self.transform),
            compiler_options=runtime.compiler_options(self.mesh.devices.flat[0].platform),
            in_shardings=(self.replicated, self.data_sharding),
            out_shardings=self.data_sharding,
        )

    @property
    def local_batch_size(self) -> int:
        return parallel.local_batch_size(self.batch_size)

    def abstract_variables(self) -> dict:
        """Shapes, dtypes and shardings of G's variables, without computing them."""
        size = self.config.data.image_size
        image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
        shapes = jax.eval_shape(
            lambda x: self.generator.init(jax.random.key(0), x, train=False), image
        )
        variables = {name: shapes.get(name, {}) for name in EVAL_VARIABLE_FIELDS}
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), variables
        )

    def __call__(self, images: np.ndarray, variables=None) -> np.ndarray:
        """This process's uint8 images [b, R, R, 3] (b = its share of the batch; prepared
        squares: records, or `image_input.stored_image`) -> probabilities."""
        variables = self.variables if variables is None else variables
        images = parallel.to_global(images, self.data_sharding)
        return parallel.to_host_local(self._forward(variables, images))

    def score_images(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for any number of images (one process), in batches padded to size."""
        out = []
        for start in range(0, len(images), self.local_batch_size):
            chunk = images[start : start + self.local_batch_size]
            out.append(self(pad_rows(chunk, self.local_batch_size))[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


def pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([rows, np.zeros((size - len(rows), *rows.shape[1:]), rows.dtype)])


class Scores(NamedTuple):
    """A trained model's probabilities on one split, and what they are over."""

    class_names: tuple[str, ...]
    probabilities: np.ndarray  # [N, L], the split's order
    labels: np.ndarray  # [N, L] in {0, 1}
    step: int  # the checkpoint's
    config: ml_collections.ConfigDict  # what it was evaluated with


def scores(workdir: str, split: str, step=None, config=None) -> Scores:
    """The one door to a trained run's scores: G of `workdir`'s checkpoint (`step`: None or
    "latest", "best", or a number) on its dataset's `split` ("validation" or "test"), with the
    config the checkpoint recorded (or `config`)."""
    classifier = load_classifier(workdir, step, config)
    probabilities, labels = classifier_scores(classifier, split)
    return Scores(classifier.class_names, probabilities, labels, classifier.step, classifier.config)


def classifier_scores(classifier: Classifier, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of a restored classifier on its dataset's `split`."""
    from jaxgan.data.datasets import get_source

    source = get_source(classifier.config.data)
    check_class_names(classifier.class_names, source.class_names)
    return split_scores(classifier, source, split)


def split_scores(classifier: Classifier, source, role: str, variables=None):
    """Probabilities and labels [N, L] over one split (`role`: validation or test), in the
    split's order, padding dropped. Labels and masks never leave the host."""
    from jaxgan.data import input_pipeline

    if role == "train":
        raise ValueError("evaluation reads the validation and test splits only")
    scores, labels, masks = [], [], []
    batches = input_pipeline.eval_batches(
        source, classifier.config.data, role, classifier.local_batch_size
    )
    for batch in batches:
        scores.append(classifier(batch["image"], variables))
        labels.append(batch["labels"])
        masks.append(batch["mask"])
    if not scores:
        raise ValueError(f"the {role} split is empty")
    scores, labels, masks = parallel.gather_host_arrays(
        (np.concatenate(scores), np.concatenate(labels), np.concatenate(masks))
    )
    return scores[masks], labels[masks]


def tune_thresholds(val_scores, val_labels, configured: float) -> dict:
    """Thresholds chosen on the validation split: one global (best C-F1, best O-F1) and one
    per class (best F1 of that class)."""
    return {
        "configured": float(configured),
        "CF1": metrics_lib.best_threshold(val_scores, val_labels, "CF1"),
        "OF1": metrics_lib.best_threshold(val_scores, val_labels, "OF1"),
        "per_class": [
            float(t) for t in metrics_lib.per_class_thresholds(val_scores, val_labels, configured)
        ],
    }


def choose_thresholds(classifier: Classifier, choice: str) -> np.ndarray:
    """[L] thresholds for `choice`: "configured" (method.threshold), "global" or "per_class"
    (chosen on the validation split: those the checkpoint recorded, or chosen now when it
    recorded none), or a number in (0, 1)."""
    num_labels = len(classifier.class_names)
    try:
        value = float(choice)
    except ValueError:
        value = None
    if value is not None:
        if not 0.0 < value < 1.0:
            raise ValueError(f"--threshold={choice} must lie in (0, 1)")
        return np.full(num_labels, value)
    if choice not in THRESHOLD_CHOICES:
        raise ValueError(
            f"unknown --threshold={choice!r}; use one of {list(THRESHOLD_CHOICES)} "
            "or a number in (0, 1)"
        )
    configured = classifier.config.method.threshold
    thresholds = classifier.saved.get("thresholds") or {"configured": configured}
    if choice != "configured" and "per_class" not in thresholds:
        print(
            f"the checkpoint at step {classifier.step} records no thresholds; choosing them on "
            "the validation split",
            file=sys.stderr,
        )
        val_scores, val_labels = classifier_scores(classifier, "validation")
        thresholds = tune_thresholds(val_scores, val_labels, configured)
    thresholds = {**thresholds, "configured": configured}
    return threshold_vector(thresholds, choice, num_labels)


def threshold_vector(thresholds: dict, choice: str, num_labels: int) -> np.ndarray:
    """The per-class thresholds [L] of a choice: configured, global (C-F1's) or per_class."""
    if choice == "configured":
        return np.full(num_labels, thresholds["configured"])
    if choice == "global":
        return np.full(num_labels, thresholds["CF1"])
    if choice == "per_class":
        return np.asarray(thresholds["per_class"], np.float64)
    raise ValueError(f"unknown threshold choice {choice!r}; use one of {list(THRESHOLD_CHOICES)}")


def evaluation_report(test_scores, test_labels, val_scores, val_labels, class_names, threshold):
    """eval.json's content (without the step): see the module docstring."""
    thresholds = tune_thresholds(val_scores, val_labels, threshold)
    results = metrics_lib.compute_metrics(test_scores, test_labels, threshold)
    per_class_thresholds = np.asarray(thresholds["per_class"])
    tuned_at = {  # (threshold for the C-* metrics, threshold for the O-* metrics)
        "_val_threshold": (thresholds["CF1"], thresholds["OF1"]),
        "_per_class_threshold": (per_class_thresholds, per_class_thresholds),
    }
    for suffix, by_kind in tuned_at.items():
        for kind, value in zip("CO", by_kind, strict=True):
            tuned = metrics_lib.precision_recall_f1(test_scores > value, test_labels)
            for name in ("P", "R", "F1"):
                results[f"{kind}{name}{suffix}"] = tuned[f"{kind}{name}"]
    results["CF1_threshold"], results["OF1_threshold"] = thresholds["CF1"], thresholds["OF1"]
    at_configured = val_scores > threshold
    results["validation_CF1"] = metrics_lib.precision_recall_f1(at_configured, val_labels)["CF1"]
    per_class = metrics_lib.per_class_metrics(test_scores, test_labels, threshold)
    return {
        "split": "test",
        "metrics": results,
        "thresholds": thresholds,
        "per_class": {
            name: {
                **{key: values[i] for key, values in per_class.items()},
                "threshold": thresholds["per_class"][i],
            }
            for i, name in enumerate(class_names)
        },
        "labels_per_image": {
            "true": metrics_lib.labels_per_image_histogram(test_labels > 0.5),
            "predicted": metrics_lib.labels_per_image_histogram(test_scores > threshold),
        },
    }


def evaluate(classifier: Classifier, source, variables=None) -> dict:
    """The report of `classifier` (or of `variables`) on the source's validation and test."""
    check_class_names(classifier.class_names, source.class_names)
    val_scores, val_labels = split_scores(classifier, source, "validation", variables)
    test_scores, test_labels = split_scores(classifier, source, "test", variables)
    return evaluation_report(
        test_scores,
        test_labels,
        val_scores,
        val_labels,
        classifier.class_names,
        classifier.config.method.threshold,
    )


def check_class_names(model: tuple, data: tuple) -> None:
    if tuple(model) != tuple(data):
        raise ValueError(
            f"the checkpoint's classes {list(model)[:6]}... differ from the dataset's "
            f"{list(data)[:6]}... (another labels file or class order?); evaluate with the "
            "data it was trained on"
        )


def write_report(workdir: str, report: dict, name: str = "eval.json") -> str:
    path = os.path.join(workdir, name)
    if jax.process_index() == 0:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)  # a reader never sees half a file
    return path


def _recorded_input(saved: dict) -> dict:
    """{config field: its value} for what a checkpoint records about the input its model was
    trained on; an evaluation config must agree (it would prepare images differently)."""
    recorded = saved.get("input", {})
    return {
        "data.name": saved.get("data"),
        "data.image_size": recorded.get("image_size"),
        "data.normalization": recorded.get("normalization"),
    }


def recorded_config(saved: dict):
    """The config a checkpoint recorded, with the fields added since it was made at their
    defaults (which reproduce what it did)."""
    if not isinstance(saved.get("config"), dict):
        raise CheckpointError(
            "this checkpoint does not record its config (made by an older version); "
            "pass --config=... as it was trained"
        )

    def merged(base: dict, recorded: dict) -> dict:
        out = dict(base)
        for key, value in recorded.items():
            both = isinstance(value, dict) and isinstance(base.get(key), dict)
            out[key] = merged(base[key], value) if both else value
        return out

    return ml_collections.ConfigDict(merged(get_base_config().to_dict(), saved["config"]))


def config_of(saved: dict, step: int, config=None):
    """The config to evaluate the checkpoint at `step` with: the one given (already checked),
    which may move the data or change batch sizes but not the input the model was trained on
    (dataset, image size, normalisation); else the one it recorded, checked as `--config` is."""
    if config is None:
        config = recorded_config(saved)
        try:
            check_config(config, for_training=False)
        except ConfigError as error:
            raise CheckpointError(
                f"the checkpoint at step {step} records a config that cannot run: {error}"
            ) from None
        runtime.enable_compilation_cache(config.compilation_cache)
        return config
    for field, recorded in _recorded_input(saved).items():
        value = field_at(config, field)
        if recorded is not None and value != recorded:
            raise CheckpointError(
                f"--config gives {field}={value!r} but the checkpoint at step {step} was "
                f"trained with {recorded!r}; drop that override (evaluation prepares images "
                "as training did)"
            )
    return config


def load_classifier(workdir: str, step=None, config=None, mesh=None) -> Classifier:
    """G of `workdir`'s checkpoint (`step`: None/"latest", "best" or a number), restored with
    the config it recorded (or `config`, checked here before the checkpoint is opened): only
    G's variables are read."""
    if config is not None:
        check_config(config, for_training=False)
        runtime.enable_compilation_cache(config.compilation_cache)
    checkpointer = Checkpointer(workdir, read_only=True)
    try:
        resolved = checkpointer.resolve_step(step)
        if resolved is None:
            raise CheckpointError(f"no checkpoint in {checkpointer.directory}; train first")
        try:
            saved = checkpointer.read_meta(resolved)
        except Exception as error:  # Orbax's own errors: the folder's metadata is damaged
            raise CheckpointError(
                checkpointer.describe_damage(resolved, "its metadata is unreadable", error)
                + checkpointer.other_steps(resolved)
            ) from None
        config = config_of(saved, resolved, config)
        class_names = saved.get("class_names")
        if class_names is None:  # older checkpoints: the dataset's names, checked by count
            from jaxgan.data.datasets import get_source

            class_names = get_source(config.data).class_names
        classifier = Classifier(config, class_names, mesh=mesh)
        meta = metadata(config, class_names)
        abstract = classifier.abstract_variables()
        # The weights evaluated are those the run trained for evaluation: its recorded config
        # decides, whatever config is passed to evaluate it with.
        ema = uses_ema(recorded_config(saved) if "config" in saved else config)
        if ema:
            fields = {EMA_FIELD: abstract}
        else:
            fields = {EVAL_VARIABLE_FIELDS[k]: v for k, v in abstract.items()}
        restored, saved = checkpointer.restore_tree(fields, meta, resolved)
    finally:
        checkpointer.close()
    if ema:
        classifier.variables = restored[EMA_FIELD]
    else:
        classifier.variables = {k: restored[f] for k, f in EVAL_VARIABLE_FIELDS.items()}
    classifier.step, classifier.saved = resolved, saved
    return classifier


def evaluate_checkpoint(config, workdir: str, step=None) -> dict:
    """--mode=eval: restores G from `workdir` (latest, "best" or a step), evaluates it on the
    validation and test splits, writes eval.json, prints and logs the table. The training
    split is neither prepared nor read."""
    from jaxgan.data.datasets import get_source
    from jaxgan.metric_writer import MetricWriter

    classifier = load_classifier(workdir, step, config)
    source = get_source(classifier.config.data)
    report = {"step": classifier.step, **evaluate(classifier, source)}
    path = write_report(workdir, report)
    writer = MetricWriter(workdir)
    writer.write(
        {"event": "eval", "step": classifier.step, "eval": report["metrics"]},
        metrics_lib.format_table(
            report["metrics"], f"test metrics of the checkpoint at step {classifier.step}"
        )
        + f"\nper-class metrics and thresholds: {path}",
    )
    writer.close()
    return report
