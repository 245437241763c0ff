"""Logged numbers reach metrics.jsonl and TensorBoard event files, named by where they came from."""

import glob
import json
import os

import numpy as np
import tensorflow as tf

from jaxgan.metric_writer import MetricWriter, scalars


def read_events(logdir):
    """{tag: [(step, value)]} from the event files under `logdir`, read by TensorFlow (which
    checks the framing's CRCs) and its own Event proto."""
    found = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                assert value.WhichOneof("value") == "simple_value"
                number = value.simple_value
                found.setdefault(value.tag, []).append((event.step, number))
    return found


def test_every_number_goes_to_jsonl_and_tensorboard(tmp_path, capsys):
    writer = MetricWriter(str(tmp_path))
    writer.write(
        {"step": 2, "phase": "adversarial", "critic_loss": np.float32(1.5), "wasserstein": 0.25,
         "gradient_penalty": 0.125, "steps_per_s": 3.0},
        "progress line",
    )  # fmt: skip
    writer.write({"step": 4, "phase": "bce", "eval": {"CF1": 0.75, "validation_CF1": 0.5}})
    writer.close()
    assert capsys.readouterr().out == "progress line\n"
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records[0]["critic_loss"] == 1.5 and records[1]["eval"]["CF1"] == 0.75
    events = read_events(str(tmp_path / "tensorboard"))
    assert events == {
        "train/critic_loss": [(2, 1.5)],
        "train/wasserstein": [(2, 0.25)],
        "train/gradient_penalty": [(2, 0.125)],
        "train/steps_per_s": [(2, 3.0)],
        "eval/CF1": [(4, 0.75)],
        "eval/validation_CF1": [(4, 0.5)],
    }


def test_words_and_flags_are_not_scalars():
    assert scalars({"step": 1, "phase": "bce", "resumed": True, "x": 2}) == {"train/x": 2.0}
    assert scalars({"step": 1, "event": "start", "total": 9, "eval": {"CF1": 1}}) == {
        "eval/CF1": 1.0
    }
