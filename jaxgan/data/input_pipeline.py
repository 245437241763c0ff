"""The tf.data input pipeline: TFDS records -> decoded, augmented NumPy batches per process.

Training data is one endless tf.data stream of epochs (`train_dataset`). Each epoch reads the
split in an order fixed by (seed, epoch), and every example's augmentation draws from a seed
fixed by (seed, epoch, position). The stream is therefore a pure function of the seed, the
same whatever the process count (each process keeps its rows of every global batch), and
resuming after `n` batches starts it at that point, skipping undecoded records only.
Images are decoded here and nowhere else (`decode_image`; TFDS is told to skip decoding, and a
`Source` only supplies labels), in our own parallel map under a private thread pool.
"""

import itertools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

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


def _read(source: Source, role: str, *, shuffle_seed: int | None, shard: bool):
    """A split's records, images left encoded: this process's shard of it (`shard`, for
    evaluation) or the whole split (training, where each process keeps its rows of every
    global batch; see `train_dataset`)."""
    split = source.splits[role]
    if shard:
        split = tfds.even_splits(split, n=jax.process_count(), drop_remainder=False)[
            jax.process_index()
        ]
    ds = source.builder.as_dataset(
        split=split,
        shuffle_files=shuffle_seed is not None,
        decoders=tfds.decode.PartialDecoding(
            {"image": True, **source.features}, decoders={"image": tfds.decode.SkipDecoding()}
        ),
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


# Epoch e's record shuffle is seeded by seed * EPOCH_SEED_STRIDE + e; example i of epoch e
# (its position in the epoch's global order) augments with the seed (seed, e * 2**31 + i).
EPOCH_SEED_STRIDE = 1_000_003


def batches_per_epoch(source: Source, global_batch: int) -> int:
    """Global batches in one epoch of the train split (the last partial batch is dropped)."""
    per_epoch = source.num_examples("train") // global_batch
    if per_epoch == 0:
        raise ValueError(
            f"the train split has {source.num_examples('train')} examples, fewer than one "
            f"batch of {global_batch}; lower schedule.batch_size"
        )
    return per_epoch


def cached_train_mib(source: Source, data_config) -> float:
    """MiB the train split takes in memory under `data.cache_decoded`: per example, its float32
    label vector and, with `data.augment="none"`, its model input (float32 [S, S, 3], a
    function of the image alone), else its decoded image (uint8, of the builder's one stored
    shape). Raises ValueError where that shape is not fixed."""
    if data_config.augment == "none":
        image_bytes = 4 * 3 * data_config.image_size**2
    else:
        shape = source.builder.info.features["image"].shape
        if None in shape:
            raise ValueError(
                f"data.cache_decoded with data.augment={data_config.augment!r} needs images of "
                f"one stored shape; this dataset's are {shape}: set data.cache_decoded=False"
            )
        image_bytes = math.prod(shape)
    return source.num_examples("train") * (image_bytes + 4 * source.num_labels) / 2**20


def check_cache_fits(source: Source, data_config) -> None:
    """Refuses (ValueError, one line) a cached train split larger than `data.cache_max_mib`."""
    mib = cached_train_mib(source, data_config)
    if mib > data_config.cache_max_mib:
        raise ValueError(
            f"data.cache_decoded would hold {mib:,.0f} MiB of train images, over "
            f"data.cache_max_mib={data_config.cache_max_mib}: raise the bound or set "
            "data.cache_decoded=False"
        )


def _already_decoded(example: dict) -> dict:
    return example


def _eval_input(example: dict, data_config) -> dict:
    """A decoded example -> the model's input without augmentation (resize, normalisation)."""
    return {
        "image": augment.preprocess_eval(example["image"], data_config),
        "labels": example["labels"],
    }


class TrainRecords(NamedTuple):
    """The train split as `train_dataset` reads it: `records` in the file order of the seed;
    `decode` what is left to do to a record before augmentation; `inputs_cached` when the
    records are the model inputs themselves."""

    records: tf.data.Dataset
    decode: Callable[[dict], dict]
    inputs_cached: bool


def train_records(source: Source, data_config, seed: int) -> TrainRecords:
    """The train split's records for `train_dataset`. With `data.cache_decoded` they are decoded
    on their first full pass and kept in memory (`check_cache_fits` bounds them by
    `data.cache_max_mib`), and every pipeline built on the same `TrainRecords` reads that one
    copy: build them once per run, so that the adversarial phase's stream does not decode the
    split a second time nor hold a second copy. Without augmentation the model inputs
    themselves are kept (`preprocess_train` with augment="none" is `preprocess_eval`: it draws
    nothing), leaving nothing to do per example and epoch."""
    records, decode = _read(source, "train", shuffle_seed=seed * EPOCH_SEED_STRIDE, shard=False)
    if not data_config.cache_decoded:
        return TrainRecords(records, decode, inputs_cached=False)
    check_cache_fits(source, data_config)
    calls = data_config.num_parallel_calls
    records = records.map(decode, num_parallel_calls=calls)
    inputs_cached = data_config.augment == "none"
    if inputs_cached:
        records = records.map(lambda example: _eval_input(example, data_config), calls)
    return TrainRecords(records.cache(), _already_decoded, inputs_cached)


def train_dataset(
    source: Source,
    data_config,
    global_batch: int,
    seed: int,
    start_batch: int = 0,
    process: tuple[int, int] | None = None,
    records: TrainRecords | None = None,
) -> tf.data.Dataset:
    """The endless training stream from global batch `start_batch` on, as one tf.data pipeline
    (epochs follow each other inside it: nothing is rebuilt at an epoch boundary).

    Yields this process's rows of each global batch of `global_batch` rows:
    {"image": float32 [B / P, S, S, 3], "labels": float32 [B / P, L]} for P processes,
    process p taking rows [p B / P, (p + 1) B / P). Every process reads the same records in
    the same order and decodes only its own rows, so the global batch (and every example's
    augmentation) is a function of (seed, position) alone, whatever the process count.

    With `data.cache_decoded`, the split is decoded once, on its first pass, and kept in memory
    (`train_records`): every process then decodes every record once instead of its rows every
    epoch. The stream is the same either way.

    Epoch e is exactly `batches_per_epoch` global batches: the split's records (files in an
    order fixed by the seed) through a shuffle buffer of `data.shuffle_buffer` seeded by
    (seed, e), the remainder dropped; where `Source.keep` drops records, the epoch is topped
    up with the first records of its own order. Resuming at `start_batch` starts in its epoch
    and skips records before they are decoded.

    `process`: (index, count), by default jax's (tests pass others). `records`: from
    `train_records(source, data_config, seed)`, shared with the run's other streams; built here
    if not given.
    """
    index, count = process if process is not None else (jax.process_index(), jax.process_count())
    if global_batch % count:
        raise ValueError(
            f"schedule.batch_size={global_batch} does not split over {count} processes; "
            f"use a multiple of {count}"
        )
    local = global_batch // count
    per_epoch = batches_per_epoch(source, global_batch)
    examples_per_epoch = per_epoch * global_batch
    first_epoch, skip = divmod(start_batch, per_epoch)
    if records is None:
        records = train_records(source, data_config, seed)
    split, decode, inputs_cached = records

    def epoch_records(epoch):
        epoch_seed = tf.constant(seed, tf.int64) * EPOCH_SEED_STRIDE + epoch
        shuffled = split.shuffle(
            data_config.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False
        )
        ds = shuffled.repeat().take(examples_per_epoch).enumerate()
        # The first epoch of a resumed run starts `skip` batches in (records, not decoded).
        ds = ds.skip(tf.where(epoch == first_epoch, tf.constant(skip * global_batch, tf.int64), 0))
        # This process's rows of every global batch; the others are never decoded here.
        ds = ds.filter(lambda position, _: (position % global_batch) // local == index)
        if inputs_cached:
            return ds.map(lambda position, example: example)
        return ds.map(lambda position, example: (epoch, position, example))

    def preprocess(epoch, position, example):
        example = decode(example)
        example_seed = tf.stack([tf.constant(seed, tf.int64), epoch * 2**31 + position])
        image = augment.preprocess_train(example["image"], example_seed, data_config)
        return {"image": image, "labels": example["labels"]}

    ds = tf.data.Dataset.counter(first_epoch).flat_map(epoch_records)
    if not inputs_cached:
        ds = ds.map(preprocess, num_parallel_calls=data_config.num_parallel_calls)
    ds = ds.batch(local, drop_remainder=True)
    return ds.prefetch(2).with_options(_options(data_config))


def train_batches(
    source: Source, data_config, global_batch: int, seed: int, start_batch: int = 0
) -> Iterator[dict]:
    """`train_dataset` as NumPy batches."""
    return train_dataset(source, data_config, global_batch, seed, start_batch).as_numpy_iterator()


def group_updates(ds: tf.data.Dataset, n_critic: int, kinds: tuple[str, ...]) -> tf.data.Dataset:
    """Batches -> adversarial updates, assembled by tf.data: each element is (critic, generator)
    for one update, read from the next n_critic * len(kinds) + 1 batches in this order: for each
    of the n_critic critic updates one batch per pair kind, then the generator's batch.
    critic: {kind: [n_critic, B, ...]}; generator: {key: [B, ...]}."""
    per_critic = len(kinds)

    def split(group):
        def critic(kind_index):
            return {
                k: tf.reshape(v[: n_critic * per_critic], [n_critic, per_critic, *v.shape[1:]])[
                    :, kind_index
                ]
                for k, v in group.items()
            }

        return (
            {kind: critic(i) for i, kind in enumerate(kinds)},
            {k: v[-1] for k, v in group.items()},
        )

    ds = ds.batch(n_critic * per_critic + 1, drop_remainder=True)
    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def eval_batches(source: Source, data_config, role: str, batch_size: int) -> Iterator[dict]:
    """One pass over this process's shard of a split, no example dropped.

    The last batch is padded to `batch_size`; its `mask` marks the real rows. Every process
    yields the same number of batches (multi-host steps must run in lockstep).
    """
    ds, decode = _read(source, role, shuffle_seed=None, shard=True)

    def preprocess(example):
        return _eval_input(decode(example), data_config)

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
