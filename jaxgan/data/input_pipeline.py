"""The input pipeline: prepared records -> uint8 batches per process, by Grain, no TensorFlow.

The host reads records (`jaxgan.data.records`: uint8 squares and 0/1 labels, nothing to
decode) and batches them; the devices augment and normalise (`jaxgan.data.augment`).

Training data is a Grain `MapDataset` indexed by global batch number: batch b of epoch e is
the positions [b B, (b + 1) B) of the epoch's order, a permutation of the train split seeded
by (seed, e) (each epoch is the split once, in another order, the remainder dropped). Every
example also carries its (epoch, position) so that its augmentation key is fixed by the seed
and its place in the stream (`augment.example_keys`). The stream is therefore a pure function
of the seed and the batch number: resuming after `n` batches reads batch `n` next (random
access, nothing skipped by reading), and P processes each read their own rows [p B / P,
(p + 1) B / P) of every global batch, which side by side are one process's batch. Grain reads
batches ahead in threads (`data.num_parallel_calls`) and, with `data.num_workers` > 0, in
worker processes; its iterator state travels with each checkpoint (`jaxgan.train`).
"""

import math
from collections.abc import Iterator

import jax
import numpy as np

from jaxgan.data import records
from jaxgan.data.datasets import Source

try:
    import grain
except ImportError:
    raise ImportError(
        "the grain package is missing (the input pipeline's loader): pip install grain, or "
        "reinstall jaxgan with pip install -e ."
    ) from None

DEFAULT_READ_THREADS = 4  # data.num_parallel_calls=-1: batches read at once, in threads
# Epoch e's order is a permutation drawn by NumPy's default_rng([seed, EPOCH_STREAM, e]).
EPOCH_STREAM = 0x65706F


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
    """MiB the train split takes in memory under `data.cache_decoded`: its records, uint8
    squares of the prepared side and their labels."""
    record = records.record_size(source.num_labels, source.side)
    return source.num_examples("train") * record / 2**20


def check_cache_fits(source: Source, data_config) -> None:
    """Refuses (ValueError, one line) a cached train split larger than `data.cache_max_mib`."""
    mib = cached_train_mib(source, data_config)
    if mib > data_config.cache_max_mib:
        raise ValueError(
            f"data.cache_decoded would hold {mib:,.0f} MiB of train images, over "
            f"data.cache_max_mib={data_config.cache_max_mib}: raise the bound or set "
            "data.cache_decoded=False"
        )


class _InMemory:
    """A split read once into memory: `read(indices)` as `records.SplitReader.read`."""

    def __init__(self, reader: records.SplitReader):
        self.images, self.labels = reader.read_all()

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, indices):
        indices = np.asarray(indices, np.int64)
        return self.images[indices], self.labels[indices]


def train_records(source: Source, data_config):
    """What the training streams read: the train split's reader, or with `data.cache_decoded`
    the split held in memory (read once; `check_cache_fits` bounds it). Build it once per run
    and pass it to every stream, so both phases read one copy."""
    reader = source.reader("train")
    if not data_config.cache_decoded:
        return reader
    check_cache_fits(source, data_config)
    return _InMemory(reader)


class _Batches:
    """Global batch number -> this process's rows of it (a Grain map function; pickles to
    worker processes with the reader, which reopens its files there)."""

    def __init__(self, reader, num_examples, global_batch, process, seed):
        index, count = process
        if global_batch % count:
            raise ValueError(
                f"schedule.batch_size={global_batch} does not split over {count} processes; "
                f"use a multiple of {count}"
            )
        self.reader = reader
        self.global_batch = global_batch
        self.local = global_batch // count
        self.first_row = index * self.local
        self.per_epoch = num_examples // global_batch
        if self.per_epoch == 0:
            raise ValueError(
                f"the train split has {num_examples} examples, fewer than one batch of "
                f"{global_batch}; lower schedule.batch_size"
            )
        self.num_examples = num_examples
        self.seed = seed
        self._orders = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 2:
                self._orders.clear()
            rng = np.random.default_rng([self.seed, EPOCH_STREAM, epoch])
            self._orders[epoch] = rng.permutation(self.num_examples)
        return self._orders[epoch]

    def __call__(self, number) -> dict:
        epoch, batch = divmod(int(number), self.per_epoch)
        positions = batch * self.global_batch + self.first_row + np.arange(self.local)
        images, labels = self.reader.read(self.order(epoch)[positions])
        return {
            "image": images,
            "labels": labels,
            "epoch": np.full(self.local, epoch, np.int32),
            "index": positions.astype(np.int32),
        }


def _batches(source, data_config, global_batch, seed, process, train):
    process = process if process is not None else (jax.process_index(), jax.process_count())
    train = train if train is not None else train_records(source, data_config)
    return _Batches(train, len(train), global_batch, process, seed)


def read_options(data_config) -> grain.ReadOptions:
    threads = data_config.num_parallel_calls
    return grain.ReadOptions(
        num_threads=DEFAULT_READ_THREADS if threads < 0 else threads,
        prefetch_buffer_size=max(2, 2 * data_config.device_prefetch),
    )


def iterate(dataset: grain.MapDataset, data_config) -> grain.DatasetIterator:
    """A Grain iterator over `dataset`, reading ahead in threads and, with
    `data.num_workers` > 0, worker processes. Its `get_state()` after an element says where
    the next one is; `set_state` resumes there."""
    stream = dataset.to_iter_dataset(read_options(data_config))
    workers = data_config.get("num_workers", 0)
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's workers read its absl flags (defaults here)
            flags.FLAGS.mark_as_parsed()
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(stream)


def train_dataset(
    source: Source,
    data_config,
    global_batch: int,
    seed: int,
    start_batch: int = 0,
    process: tuple[int, int] | None = None,
    records: object | None = None,
    num_batches: int | None = None,
) -> grain.MapDataset:
    """The training stream from global batch `start_batch` on, `num_batches` of them (by
    default as many as a run could want): element k is global batch `start_batch + k`, this
    process's rows of it, {"image": uint8 [B / P, R, R, 3], "labels": float32 [B / P, L],
    "epoch", "index": int32 [B / P]} (see the module docstring).

    `process`: (index, count), by default jax's (tests pass others). `records`: from
    `train_records`, shared with the run's other streams; read here if not given."""
    load = _batches(source, data_config, global_batch, seed, process, records)
    stop = start_batch + (num_batches if num_batches is not None else 2**40)
    return grain.MapDataset.range(start_batch, stop).map(load)


def train_batches(
    source: Source, data_config, global_batch: int, seed: int, start_batch: int = 0
) -> Iterator[dict]:
    """`train_dataset` as an iterator of NumPy batches."""
    return iterate(train_dataset(source, data_config, global_batch, seed, start_batch), data_config)


class _Updates:
    """Update number -> (critic, generator) host batches of one adversarial update, read from
    the next n_critic * len(kinds) + 1 global batches in this order: for each of the n_critic
    critic updates one batch per pair kind, then the generator's batch.
    critic: {kind: {key: [n_critic, B, ...]}}; generator: {key: [B, ...]}."""

    def __init__(self, load: _Batches, first_batch: int, n_critic: int, kinds):
        self.load, self.first_batch = load, first_batch
        self.n_critic, self.kinds = n_critic, tuple(kinds)
        self.per_update = n_critic * len(self.kinds) + 1

    def __call__(self, update) -> tuple[dict, dict]:
        first = self.first_batch + int(update) * self.per_update
        batches = [self.load(first + i) for i in range(self.per_update)]
        per_critic = len(self.kinds)
        critic = {
            kind: {
                key: np.stack([batches[c * per_critic + k][key] for c in range(self.n_critic)])
                for key in batches[0]
            }
            for k, kind in enumerate(self.kinds)
        }
        return critic, batches[-1]


def update_dataset(
    source: Source,
    data_config,
    global_batch: int,
    seed: int,
    first_batch: int,
    num_updates: int,
    n_critic: int,
    kinds,
    process: tuple[int, int] | None = None,
    records: object | None = None,
) -> grain.MapDataset:
    """The adversarial phase's updates (`_Updates`), update u reading from global batch
    `first_batch + u * (n_critic * len(kinds) + 1)` on."""
    load = _batches(source, data_config, global_batch, seed, process, records)
    return grain.MapDataset.range(num_updates).map(_Updates(load, first_batch, n_critic, kinds))


def group_updates(batches: Iterator[dict], n_critic: int, kinds) -> Iterator[tuple[dict, dict]]:
    """Consecutive host batches -> updates, as `_Updates` groups them (for any stream)."""
    per_update = n_critic * len(kinds) + 1
    while True:
        group = [next(batches, None) for _ in range(per_update)]
        if group[-1] is None:
            return
        yield _Updates(group.__getitem__, 0, n_critic, kinds)(0)


class _EvalBatches:
    """Batch number -> rows of this process's shard of a split, padded, with a mask."""

    def __init__(self, reader, start: int, stop: int, batch_size: int):
        self.reader, self.start, self.stop, self.batch_size = reader, start, stop, batch_size

    def __call__(self, number) -> dict:
        first = self.start + int(number) * self.batch_size
        rows = np.arange(first, min(first + self.batch_size, self.stop))
        images, labels = self.reader.read(rows)
        pad = self.batch_size - len(rows)
        return {
            "image": np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.uint8)]),
            "labels": np.concatenate([labels, np.zeros((pad, labels.shape[1]), np.float32)]),
            "mask": np.arange(self.batch_size) < len(rows),
        }


def eval_batches(source: Source, data_config, role: str, batch_size: int) -> Iterator[dict]:
    """One pass over this process's shard of a split, in the split's order, no example
    dropped: {"image": uint8 [b, R, R, 3], "labels": float32 [b, L], "mask": bool [b]}.

    Process p of P reads rows [p N / P, (p + 1) N / P); the last batch is padded to
    `batch_size` (`mask` marks the real rows), and every process yields the same number of
    batches (multi-host steps run in lockstep), all-padding ones where its shard is shorter."""
    reader = source.reader(role)
    n, count, index = len(reader), jax.process_count(), jax.process_index()
    start, stop = index * n // count, (index + 1) * n // count
    num_batches = math.ceil(math.ceil(n / count) / batch_size)
    dataset = grain.MapDataset.range(num_batches).map(_EvalBatches(reader, start, stop, batch_size))
    return iter(dataset.to_iter_dataset(read_options(data_config)))
