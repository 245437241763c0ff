"""Prepares a dataset's records: its TFDS build -> the uint8 squares training reads.

    python -m jaxgan.data.prepare --config=configs/coco.py [--config.data.data_dir=DIR ...]

prepares (building the TFDS dataset first where the dataset can be built without a download
by hand) the records the config trains, evaluates and predicts on, under `data.data_dir`
(`jaxgan.data.records`). This is the one step that needs TensorFlow (TFDS reads its own
builds with it); training, evaluation and prediction then read the records without it, so
the data_dir can be carried to an accelerator host that has no TensorFlow. Training prepares
them itself on first use where TensorFlow is installed.
"""

import concurrent.futures
import os
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from jaxgan.data import image_files, records

CHUNK = 256  # examples decoded at once by the thread pool


def _decoded(examples: Iterator[dict], side: int, num_threads: int) -> Iterator[tuple]:
    """(example, uint8 square) in order; PIL decodes and resizes in threads (no GIL)."""

    def square(example):
        return image_files.stored_square(example["image"], side)

    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        while chunk := [e for _, e in zip(range(CHUNK), examples, strict=False)]:
            yield from zip(chunk, pool.map(square, chunk), strict=True)


def write_records(
    builder,
    path: str,
    side: int,
    class_names,
    labels: Callable[[dict], np.ndarray],
    keep: Callable[[dict], bool] | None = None,
    features: dict | None = None,
    splits: Sequence[str] | None = None,
) -> records.Prepared:
    """Reads `splits` (default: every split) of the prepared TFDS `builder` (images left
    encoded, only `features` parsed besides), keeps the examples `keep` accepts, and writes
    their squares and `labels(example)` to `path`. Needs TensorFlow."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.set_visible_devices([], "GPU")  # TFDS reads on the host only
    source = {
        "tfds": f"{builder.name}/{builder.builder_config.name if builder.builder_config else ''}",
        "version": str(builder.version),
        "data_dir": builder.data_dir,
    }
    writer = records.Writer(path, class_names, side, source)
    splits = list(splits or builder.info.splits)
    threads = min(8, (os.cpu_count() or 1) * 2)
    try:
        for split in splits:
            dataset = builder.as_dataset(
                split=split,
                shuffle_files=False,
                decoders=tfds.decode.PartialDecoding(
                    {"image": True, **(features or {"labels": True})},
                    decoders={"image": tfds.decode.SkipDecoding()},
                ),
            )
            kept = (e for e in tfds.as_numpy(dataset) if keep is None or keep(e))
            for example, image in _decoded(kept, side, threads):
                writer.add(split, image, labels(example))
        prepared = writer.close(splits)
    except BaseException:
        writer.abort()
        raise
    print(
        f"prepared {builder.name} at {side} px in {path}: "
        + ", ".join(f"{n} {name}" for name, n in prepared.sizes().items()),
        file=sys.stderr,
    )
    return prepared


def main(argv=None) -> None:
    from absl import app, flags
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file("config", None, "Config file.")
    flags.mark_flags_as_required(["config"])

    def run(argv):
        del argv
        from jaxgan.data.datasets import get_source

        source = get_source(config_flag.value.data)
        print(
            f"records ready in {source.prepared.path}: "
            + ", ".join(f"{role} {source.num_examples(role)}" for role in source.splits)
        )

    app.run(run, argv)


if __name__ == "__main__":
    main()
