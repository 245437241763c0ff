"""Where logged numbers go: a line on stdout, a JSON line in `<workdir>/metrics.jsonl`, and a
TensorBoard scalar under `<workdir>/tensorboard` for every number of a record (process 0 only).

TensorBoard events are written with TensorFlow's own event writer (`tf.summary.write`, with the
metadata that marks a scalar for TensorBoard's scalars plugin). TensorFlow is already a
dependency (the input pipeline), so writing adds no package; `tf.summary.scalar` and
`clu.metric_writers` would each need the `tensorboard` package installed in the training
environment, for the same event files. Viewing them needs TensorBoard, installed wherever
you look at them (`pip install tensorboard; tensorboard --logdir=WORKDIR/tensorboard`).
Scalars are named by where they came from: training records as `train/<name>` (losses,
Wasserstein estimate, gradient penalty, steps/s), evaluations as `eval/<name>` (every metric
of the table, test split unless the name says validation).
"""

import json
import numbers
import os

import jax

TENSORBOARD_DIR = "tensorboard"


def scalars(record: dict) -> dict[str, float]:
    """The TensorBoard scalars of one record: its numbers, named train/... or eval/...; an
    event record's own numbers (a run's size at its start, ...) are not a curve."""
    out = {}
    for key, value in record.items():
        if key == "step" or ("event" in record and not isinstance(value, dict)):
            continue
        value = _plain(value)
        if isinstance(value, dict):
            for name, inner in value.items():
                inner = _plain(inner)
                if _is_number(inner):
                    out[f"{key}/{name}"] = float(inner)
        elif _is_number(value):
            out[f"train/{key}"] = float(value)
    return out


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class MetricWriter:
    """Progress lines, `metrics.jsonl` and TensorBoard, written by process 0."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, TENSORBOARD_DIR)
        self._summary = None

    def _summary_writer(self):
        if self._summary is None:
            import tensorflow as tf  # only when there is something to write

            self._summary = tf.summary.create_file_writer(self.tensorboard_dir)
        return self._summary

    def write(self, record: dict, line: str | None = None) -> None:
        """Prints `line`, appends `record` as JSON, and writes its numbers at its step."""
        if not self.active:
            return
        if line:
            print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        values = scalars(record)
        if values and "step" in record:
            import tensorflow as tf

            with self._summary_writer().as_default(step=int(record["step"])):
                for tag, value in values.items():
                    tf.summary.write(
                        tag, tf.constant(value, tf.float32), metadata=_scalar_metadata()
                    )
            self._summary.flush()

    def close(self) -> None:
        if self._summary is not None:
            self._summary.close()
            self._summary = None


def _scalar_metadata():
    """What TensorBoard's scalars plugin looks for: its name and version-0 (empty) content."""
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value
