"""The tf.data input pipeline: TFDS records -> decoded, augmented NumPy batches per process.

Training data is an endless sequence of epochs. Each epoch reads this process's shard of the
split in an order fixed by (seed, epoch), and every example's augmentation draws from a seed
fixed by (seed, epoch, position). The stream is therefore a pure function of the seed, and
resuming after `n` batches rebuilds it at that point, skipping undecoded records only.
Images are decoded here and nowhere else (`decode_image`; TFDS is told to skip decoding, and a
`Source` only supplies labels), in our own parallel map under a private thread pool.
"""

import itertools
from collections.abc import Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxgan.data import augment
from jaxgan.data.datasets import Source

# Keep TensorFlow off accelerators: it only feeds the host.
tf.config.set_visible_devices([], "GPU")


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG or PNG bytes (a scalar string tensor) -> uint8 [H, W, 3].

    The one image decoder of training, evaluation and prediction (`jaxgan.data.image_input`).
    Builders store only JPEG and PNG (`image_files.read_image`); grey becomes three channels.
    """
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _read(source: Source, role: str, *, shuffle_seed: int | None, drop_remainder: bool):
    """This process's shard of a split, images left encoded."""
    split = tfds.even_splits(
        source.splits[role], n=jax.process_count(), drop_remainder=drop_remainder
    )[jax.process_index()]
    ds = source.builder.as_dataset(
        split=split,
        shuffle_files=shuffle_seed is not None,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False),
    )

    def decode(example):
        return {"image": decode_image(example["image"]), "labels": source.labels(example)}

    if source.keep is not None:
        ds = ds.filter(source.keep)
    return ds, decode


def _options(data_config) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    if data_config.private_threads > 0:
        options.threading.private_threadpool_size = data_config.private_threads
    return options


def _epoch(source, data_config, batch_size, seed, epoch, skip_batches):
    epoch_seed = seed * 1_000_003 + epoch
    ds, decode = _read(source, "train", shuffle_seed=epoch_seed, drop_remainder=True)
    ds = ds.shuffle(data_config.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.enumerate().skip(skip_batches * batch_size)
    stream = (epoch * jax.process_count() + jax.process_index()) * 2**31

    def preprocess(index, example):
        example = decode(example)
        example_seed = tf.stack([tf.constant(seed, tf.int64), stream + index])
        image = augment.preprocess_train(example["image"], example_seed, data_config)
        return {"image": image, "labels": example["labels"]}

    ds = ds.map(preprocess, num_parallel_calls=data_config.num_parallel_calls)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
    return ds.with_options(_options(data_config))


def train_batches(
    source: Source, data_config, batch_size: int, seed: int, start_batch: int = 0
) -> Iterator[dict]:
    """Endless training batches of `batch_size` rows (this process's share), from `start_batch`.

    Yields {"image": float32 [B, S, S, 3], "labels": float32 [B, L]}.
    """
    augment.check_config(data_config)
    per_epoch = source.num_examples("train") // jax.process_count() // batch_size
    if per_epoch == 0:
        raise ValueError(
            f"the train split has {source.num_examples('train')} examples, fewer than one "
            f"batch of {batch_size} per process; lower schedule.batch_size"
        )
    first_epoch, skip = divmod(start_batch, per_epoch)
    for epoch in itertools.count(first_epoch):
        ds = _epoch(
            source, data_config, batch_size, seed, epoch, skip if epoch == first_epoch else 0
        )
        yield from ds.as_numpy_iterator()


def eval_batches(source: Source, data_config, role: str, batch_size: int) -> Iterator[dict]:
    """One pass over this process's shard of a split, no example dropped.

    The last batch is padded to `batch_size`; its `mask` marks the real rows. Every process
    yields the same number of batches (multi-host steps must run in lockstep).
    """
    augment.check_config(data_config)
    ds, decode = _read(source, role, shuffle_seed=None, drop_remainder=False)

    def preprocess(example):
        example = decode(example)
        image = augment.preprocess_eval(example["image"], data_config)
        return {"image": image, "labels": example["labels"]}

    ds = ds.map(preprocess, num_parallel_calls=data_config.num_parallel_calls)
    ds = ds.batch(batch_size).prefetch(2).with_options(_options(data_config))
    per_process = -(-source.num_examples(role) // jax.process_count())  # ceil division
    num_batches = -(-per_process // batch_size)
    empty = None
    for batch in itertools.chain(ds.as_numpy_iterator(), itertools.repeat(None)):
        if num_batches == 0:
            return
        num_batches -= 1
        if batch is None:  # this process ran out before the others
            yield empty
            continue
        rows = batch["labels"].shape[0]
        padded = {
            k: np.concatenate([v, np.zeros((batch_size - rows, *v.shape[1:]), v.dtype)])
            for k, v in batch.items()
        }
        padded["mask"] = np.arange(batch_size) < rows
        empty = {k: np.zeros_like(v) for k, v in padded.items()}
        yield padded
