"""One image file for prediction: exactly the rows evaluation makes of it."""

import csv
import os

import ml_collections
import numpy as np
import pytest
from hostile_files import make_fifo, write_big_png, write_png_header
from PIL import Image

from jaxgan.data import augment, custom, image_input, input_pipeline


def write_images(folder):
    """Generated images in the kinds users have: name -> path."""
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(40), np.arange(52)).astype(np.uint8) * 2
    rgb = np.dstack([ramp, 255 - ramp, rng.integers(0, 256, ramp.shape, dtype=np.uint8)])
    alpha = np.dstack([rgb, (ramp > 60).astype(np.uint8) * 255])
    images = {
        "rgb.jpg": Image.fromarray(rgb),
        "grey.png": Image.fromarray(ramp),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "alpha.png": Image.fromarray(alpha, "RGBA"),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "sixteen.png": Image.fromarray(ramp.astype(np.uint16) * 257),
        "tall.bmp": Image.fromarray(rgb[:, :9]),
    }
    folder.mkdir()
    paths = {}
    for name, image in images.items():
        image.save(folder / name)
        paths[name] = str(folder / name)
    write_big_png(folder / "large.png", 1_600, 1_200)  # stored downscaled to 683 x 512
    paths["large.png"] = str(folder / "large.png")
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A custom dataset of those images, and the config its evaluation reads it with."""
    root = tmp_path_factory.mktemp("predict")
    paths = write_images(root / "photos")
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "a", "b"])
        writer.writerows([name, 1, i % 2] for i, name in enumerate(paths))
    data_config = ml_collections.ConfigDict(
        {
            "name": "custom",
            "image_dir": str(root / "photos"),
            "labels_file": str(root / "labels.csv"),
            "data_dir": str(root / "tfds"),
            "validation_fraction": 0.25,
            "test_fraction": 0.25,
            "image_size": 24,
            "normalization": "imagenet",
            "augment": "paper",
            "num_parallel_calls": 2,
            "num_workers": 0,
            "device_prefetch": 2,
        }
    )
    return custom.make_source(data_config), data_config, paths


def test_eval_input_is_the_eval_pipelines_row_for_that_file(built):
    source, data_config, paths = built
    compared = set()
    builder = custom.make_builder(data_config)
    for role in ("train", "validation", "test"):
        files = _files(builder, source.splits[role])
        batches = list(input_pipeline.eval_batches(source, data_config, role, batch_size=4))
        rows = np.concatenate([b["image"][b["mask"]] for b in batches])
        assert len(rows) == len(files)
        transform = augment.Transform.from_config(data_config)
        for name, row in zip(files, rows, strict=True):
            square = image_input.stored_image(paths[name], source.side)
            np.testing.assert_array_equal(square, row, err_msg=name)
            single = image_input.eval_input(paths[name], data_config)
            assert single.shape == (24, 24, 3) and single.dtype == np.float32
            expected = np.asarray(augment.eval_batch(row[None], transform)[0])
            np.testing.assert_allclose(single, expected, rtol=0, atol=1e-6, err_msg=name)
            compared.add(name)
    assert compared == set(paths)  # every kind went through both paths


def _files(builder, split):
    """The split's file names in its stored order (TFDS, as the preparation read it)."""
    import tensorflow_datasets as tfds

    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return [example["file"].decode() for example in tfds.as_numpy(dataset)]


def test_load_image_is_the_decoded_stored_image(built):
    _, _, paths = built
    large = image_input.load_image(paths["large.png"])
    assert large.shape == (512, 683, 3) and large.dtype == np.uint8
    grey = image_input.load_image(paths["grey.png"])
    np.testing.assert_array_equal(grey[..., 0], np.asarray(Image.open(paths["grey.png"])))
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    sixteen = image_input.load_image(paths["sixteen.png"])  # the high byte of 257 * v is v
    np.testing.assert_array_equal(sixteen[..., 1], grey[..., 1])


def test_a_file_that_cannot_be_used_is_one_line_naming_it(tmp_path, built):
    _, data_config, _ = built
    fifo = make_fifo(tmp_path / "pipe.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    cases = {
        fifo: "not a regular file: a named pipe",
        str(tmp_path / "none.jpg"): "missing",
        str(tmp_path / "text.jpg"): "unreadable: not an image in a known format",
        "/dev/zero": "not a regular file: a character device",
    }
    for path, reason in cases.items():
        with pytest.raises(image_input.BadImage) as error:
            image_input.eval_input(path, data_config)
        assert str(error.value).startswith(f"image {path!r}: {reason}")
        assert "\n" not in str(error.value)
    too_many = tmp_path / "bomb.png"
    write_png_header(too_many, 100_000, 100_000)
    with pytest.raises(image_input.BadImage, match="too many pixels: 10000000000, the limit"):
        image_input.load_image(too_many)
    assert os.path.exists(fifo)
