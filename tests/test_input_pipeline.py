"""The Grain input pipeline and the prepared records, on the embedded dataset's small build."""

import ast
import importlib
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from jaxgan.data import datasets, input_pipeline, records
from jaxgan.data.datasets import get_source

BATCH = 16


@pytest.fixture(scope="module")
def data_config(data_dir):
    return ml_collections.ConfigDict(
        {
            "name": "digit_scenes",
            "builder_config": "small",
            "data_dir": data_dir,
            "image_size": 24,
            "augment": "paper",
            "normalization": "unit",
            "num_parallel_calls": 2,
            "num_workers": 0,
            "device_prefetch": 2,
            "cache_decoded": False,
            "cache_max_mib": 64,
        }
    )


@pytest.fixture(scope="module")
def source(data_config):
    return get_source(data_config)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _with(data_config, **fields):
    return ml_collections.ConfigDict({**data_config.to_dict(), **fields})


def test_train_batches_shapes_and_values(source, data_config):
    batch = next(input_pipeline.train_batches(source, data_config, BATCH, seed=0))
    assert batch["image"].shape == (BATCH, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["labels"].shape == (BATCH, 10) and batch["labels"].dtype == np.float32
    assert set(np.unique(batch["labels"])) <= {0.0, 1.0}
    assert batch["labels"].sum(1).min() >= 1  # every scene has objects
    np.testing.assert_array_equal(batch["index"], np.arange(BATCH))
    np.testing.assert_array_equal(batch["epoch"], 0)


def test_records_hold_the_tfds_build_decoded(source, data_config):
    """Each prepared record is its TFDS example: the PNG decoded, the labels as stored."""
    import tensorflow_datasets as tfds

    from jaxgan.data.digit_scenes import Builder

    builder = Builder(config="small", data_dir=data_config.data_dir)
    expected = list(tfds.as_numpy(builder.as_dataset(split="test[:20]", shuffle_files=False)))
    images, labels = source.reader("test").read(range(20))
    for i, example in enumerate(expected):
        np.testing.assert_array_equal(images[i], example["image"])
        np.testing.assert_array_equal(labels[i], example["labels"])


def test_stream_is_a_function_of_the_seed(source, data_config):
    a = take(input_pipeline.train_batches(source, data_config, BATCH, seed=3), 4)
    b = take(input_pipeline.train_batches(source, data_config, BATCH, seed=3), 4)
    c = take(input_pipeline.train_batches(source, data_config, BATCH, seed=4), 4)
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert not np.array_equal(a[0]["labels"], c[0]["labels"])


def test_resuming_continues_the_same_stream_across_epochs(source, data_config):
    per_epoch = source.num_examples("train") // BATCH  # 25 batches of 16 in the small build
    whole = take(input_pipeline.train_batches(source, data_config, BATCH, seed=1), per_epoch + 3)
    resumed = take(
        input_pipeline.train_batches(source, data_config, BATCH, seed=1, start_batch=per_epoch - 1),
        4,
    )
    for x, y in zip(whole[per_epoch - 1 :], resumed, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert resumed[1]["epoch"][0] == 1 and resumed[1]["index"][0] == 0


def _fingerprints(batches):
    return [
        (b["image"][i].tobytes(), b["labels"][i].tobytes())
        for b in batches
        for i in range(len(b["labels"]))
    ]


def test_each_epoch_is_the_split_once_in_another_order(source, data_config):
    per_epoch = source.num_examples("train") // BATCH
    stream = input_pipeline.train_batches(source, data_config, BATCH, seed=2)
    epochs = [_fingerprints(take(stream, per_epoch)) for _ in range(2)]
    split = _fingerprints(input_pipeline.eval_batches(source, data_config, "train", BATCH))
    assert len(set(split)) == len(split) == per_epoch * BATCH  # the keys tell examples apart
    for epoch in epochs:
        assert sorted(epoch) == sorted(split)
    assert epochs[0] != epochs[1]


def test_the_global_batch_does_not_depend_on_the_process_count(source, data_config):
    """Two processes' rows of each batch, side by side, are one process's batch (their
    epochs and positions too, which key the augmentation), from the start and a resume."""
    for start in (0, 23):
        whole = input_pipeline.train_dataset(source, data_config, BATCH, 1, start)
        halves = [
            input_pipeline.train_dataset(source, data_config, BATCH, 1, start, process=(p, 2))
            for p in range(2)
        ]
        for k in range(4):  # crosses the epoch boundary after batch 25 when resuming at 23
            one, first, second = whole[k], halves[0][k], halves[1][k]
            assert first["image"].shape[0] == BATCH // 2
            for key in one:
                np.testing.assert_array_equal(one[key], np.concatenate([first[key], second[key]]))


def test_the_in_memory_cache_leaves_the_stream_as_it_is(source, data_config):
    cached = _with(data_config, cache_decoded=True)
    per_epoch = source.num_examples("train") // BATCH
    for start, count in ((0, per_epoch + 2), (per_epoch + 3, 4)):
        a = input_pipeline.train_batches(source, data_config, BATCH, 5, start)
        b = input_pipeline.train_batches(source, cached, BATCH, 5, start)
        for x, y in zip(take(a, count), take(b, count), strict=True):
            for key in x:
                np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.slow  # worker processes
def test_worker_processes_read_the_same_stream(source, data_config):
    plain = take(input_pipeline.train_batches(source, data_config, BATCH, 6, 3), 3)
    workers = _with(data_config, num_workers=2)
    parallel = take(input_pipeline.train_batches(source, workers, BATCH, 6, 3), 3)
    for x, y in zip(plain, parallel, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_a_cache_over_its_bound_is_refused(source, data_config):
    n = source.num_examples("train")
    assert input_pipeline.cached_train_mib(source, data_config) == pytest.approx(
        n * (32 * 32 * 3 + 10) / 2**20
    )
    input_pipeline.train_records(source, _with(data_config, cache_decoded=True, cache_max_mib=2))
    with pytest.raises(ValueError, match=r"1 MiB of train images, over .*=1"):
        input_pipeline.train_records(
            source, _with(data_config, cache_decoded=True, cache_max_mib=1)
        )


def test_a_batch_that_does_not_split_over_the_processes_is_a_clear_error(source, data_config):
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        input_pipeline.train_dataset(source, data_config, BATCH, 0, process=(0, 3))


def test_eval_covers_every_example_once_with_padding(source, data_config):
    batches = list(input_pipeline.eval_batches(source, data_config, "test", 48))
    total = source.num_examples("test")  # 200: four full batches and one of 8
    assert len(batches) == -(-total // 48)
    assert sum(int(b["mask"].sum()) for b in batches) == total
    assert all(b["image"].shape == (48, 32, 32, 3) for b in batches)
    last = batches[-1]
    assert last["mask"][: total % 48].all() and not last["mask"][total % 48 :].any()
    images, _ = source.reader("test").read(range(48))
    np.testing.assert_array_equal(batches[0]["image"], images)


def test_too_large_a_batch_is_a_clear_error(source, data_config):
    with pytest.raises(ValueError, match="fewer than one batch"):
        input_pipeline.train_dataset(source, data_config, 10_000, seed=0)


def test_unknown_dataset_is_a_clear_error(data_config):
    with pytest.raises(ValueError, match="unknown data.name 'imagenet'"):
        get_source(_with(data_config, name="imagenet"))


@pytest.mark.parametrize(
    "spec",
    ["train", "train[:95%]", "train[95%:]", "train[10:-5]", "train[-7%:]", "train[3:9]+test",
     "test[:33%]+train[50%:]", "validation[1%:2%]"],
)  # fmt: skip
def test_split_specs_read_what_tfds_reads(spec):
    import tensorflow_datasets as tfds

    sizes = {"train": 403, "validation": 57, "test": 10}
    infos = [
        tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0) for name, n in sizes.items()
    ]
    split_dict = tfds.core.SplitDict(infos)
    instructions = tfds.core.ReadInstruction.from_spec(spec).to_absolute(split_dict)
    expected = tuple(
        (i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to)
        for i in instructions
    )
    assert records.resolve_split(spec, sizes) == expected


def test_a_bad_split_spec_is_one_line():
    for spec, message in (("trian", "unknown split 'trian'"), ("train[5", "not a split"),
                          ("train[:x]", "not an index or a percentage")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            records.resolve_split(spec, {"train": 10})


@pytest.fixture
def copied(data_config, source, tmp_path):
    """The prepared small build copied to a fresh data_dir: (config, its records folder)."""
    data_dir = tmp_path / "tfds"
    shutil.copytree(os.path.dirname(source.prepared.path), data_dir / "records")
    key = os.path.relpath(
        source.prepared.path, os.path.join(data_config.data_dir, "jaxgan_records")
    )
    folder = data_dir / "jaxgan_records" / key
    folder.parent.mkdir(parents=True)
    os.replace(data_dir / "records" / os.path.basename(source.prepared.path), folder)
    return _with(data_config, data_dir=str(data_dir)), folder


def test_missing_truncated_or_corrupt_shards_are_one_line_naming_the_fix(copied):
    config, folder = copied
    get_source(config)  # as prepared: fine
    shard = folder / "train-00000.array_record"
    data = shard.read_bytes()
    cases = [
        (lambda: shard.unlink(), "is missing"),
        (lambda: shard.write_bytes(data[:-100]), "bytes, not the"),
    ]
    for damage, message in cases:
        damage()
        with pytest.raises(records.RecordsError) as error:
            get_source(config)
        line = str(error.value)
        assert message in line and "prepare again: python -m jaxgan.data.prepare" in line
        assert "\n" not in line
        shard.write_bytes(data)
    corrupt = bytearray(data)
    corrupt[200:216] = bytes(16)  # inside the first record, the file's size unchanged
    shard.write_bytes(bytes(corrupt))
    source = get_source(config)
    with pytest.raises(records.RecordsError, match=r"is corrupt \(.*\); delete .* and prepare"):
        source.reader("train").read(range(400))


def test_records_of_another_format_are_refused_naming_the_fix(copied):
    config, folder = copied
    index = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**index, "version": 0}))
    with pytest.raises(records.RecordsError, match="another format .* prepare again: python"):
        get_source(config)


def test_a_dataset_without_records_and_without_tensorflow_is_one_line(data_config, tmp_path):
    """Where TensorFlow cannot be imported, missing records cannot be prepared: one line
    naming the command to run where it can."""
    import subprocess
    import sys

    fresh = _with(data_config, data_dir=str(tmp_path))
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import ml_collections\n"
        "from jaxgan.data.datasets import get_source\n"
        f"config = ml_collections.ConfigDict({fresh.to_dict()!r})\n"
        "get_source(config)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot be prepared here (tensorflow is not installed)" in last
    assert "python -m jaxgan.data.prepare --config=configs/digit_scenes.py" in last


def test_every_dataset_is_a_package_of_the_same_shape():
    import tensorflow_datasets as tfds

    names = set()
    for name, module_name in datasets.SOURCES.items():
        package = importlib.import_module(module_name)
        folder = os.path.dirname(package.__file__)
        assert os.path.basename(package.__file__) == "__init__.py", name  # a package
        assert callable(package.make_source) and callable(package.prepare), name
        leaf = module_name.rsplit(".", 1)[1]
        if os.path.exists(os.path.join(folder, f"{leaf}_dataset_builder.py")):
            builder = importlib.import_module(f"{module_name}.{leaf}_dataset_builder").Builder
            assert package.Builder is builder, name
            assert issubclass(builder, tfds.core.GeneratorBasedBuilder), name
            names.add(builder.name)
        else:
            assert name == "coco"  # TFDS's own coco/2014
    # The names their builds are stored under: renaming one would orphan every built copy.
    assert names == {"digit_scenes", "nus_wide", "custom_multilabel"}
    from jaxgan.data import digit_scenes, nuswide
    from jaxgan.data.custom import naming

    assert str(digit_scenes.Builder.VERSION) == digit_scenes.VERSION
    assert set(digit_scenes.BUILDER_CONFIGS) == set(digit_scenes.Builder.builder_configs)
    assert str(nuswide.Builder.VERSION) == nuswide.VERSION
    assert str(importlib.import_module("jaxgan.data.custom").Builder.VERSION) == naming.VERSION
    for name in ("coco", "nuswide"):  # built once by hand: python -m jaxgan.data.<name>
        main = importlib.import_module(f"jaxgan.data.{name}.__main__")
        with pytest.raises(SystemExit) as exit_info:
            main.main(["--help"])
        assert exit_info.value.code == 0


def test_only_image_files_decodes_images():
    """One decoder: nothing under jaxgan/ but image_files calls one."""
    decoders = {"decode_image", "decode_jpeg", "decode_png", "decode_example", "decode_raw"}
    callers = set()
    root = os.path.dirname(os.path.dirname(input_pipeline.__file__))
    for folder, _, files in os.walk(root):
        for file in (f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, file)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in decoders:
                    callers.add((file, ast.unparse(node.func)))
    assert callers == set()


def test_cocos_labels_and_keep():
    from jaxgan.data import coco

    example = {"objects": {"label": np.array([4, 4, 7])}}
    assert coco.keep(example) and set(np.flatnonzero(coco.labels(example))) == {4, 7}
    assert not coco.keep({"objects": {"label": np.zeros(0, np.int64)}})
    # COCO is never downloaded here: its feature dict comes with the builder's code.
    features = coco.make_builder({"data_dir": None}).info.features
    assert "label" in features["objects"].feature


def test_two_preparations_at_once_prepare_once(data_config, tmp_path, monkeypatch):
    """Two trainings that find a dataset unprepared at once: the first prepares (held back
    here until the second is waiting), the second waits for it and reads its records."""
    import sys
    import threading

    calls, waiting = [], threading.Event()

    class Stderr:  # where the waiting one says so
        def write(self, text):
            if "waiting for another preparation" in text:
                waiting.set()
            return len(text)

        def flush(self):
            pass

    def prepare(path, side):
        calls.append(threading.current_thread().name)
        waiting.wait(30)
        writer = records.Writer(path, ["a", "b"], side, {"test": True})
        for i in range(4):
            writer.add("train", np.full((side, side, 3), i, np.uint8), [i % 2, 1])
        writer.close(["train"])

    config = _with(data_config, data_dir=str(tmp_path))
    sources = {}

    def open_one():
        sources[threading.current_thread().name] = datasets.open_source(
            config, "test/set/1", {r: "train" for r in datasets.SPLIT_ROLES}, prepare, "fix"
        )

    monkeypatch.setattr(sys, "stderr", Stderr())
    threads = [threading.Thread(target=open_one, name=f"run{k}") for k in range(2)]
    threads[0].start()
    while not calls:
        threads[0].join(0.01)
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert waiting.is_set() and calls == ["run0"]
    assert {name: s.num_examples("train") for name, s in sources.items()} == {"run0": 4, "run1": 4}
