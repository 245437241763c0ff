"""MS-COCO 2014 as a multi-label dataset: TFDS `coco/2014`, 80 labels in category-id order.

Each image's objects (crowd annotations included) become an 80-way multi-hot vector. Images
without any object are dropped by `keep`, leaving 82,081 of train2014's 82,783 images and
40,137 of val2014's 40,504 — the paper's numbers. Results are reported on COCO's validation
split ("test" role), as in the paper; the "validation" role (thresholds, hyper-parameters) is
carved out of train by the config's `train_split` / `validation_split` (default: the last 5%).

TFDS downloads and builds `coco/2014` once: 37.6 GiB of zips (the unlabelled test2014 and
test2015 images included), extracted, then stored as records of the original JPEG bytes, so
the build needs roughly 115 GB free and about 38 GB stay once `<data_dir>/downloads` is
deleted (estimates from the archive sizes). See docs/datasets.md or run
`python -m jaxgan.data.coco`.
"""

import numpy as np

from jaxgan.data.datasets import Source, open_source, split_roles

# The 80 object categories in increasing COCO category id (1, 2, ..., 90 with 11 ids unused):
# the order of TFDS's objects/label and of the label vector.
CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
NUM_LABELS = len(CLASS_NAMES)
# The data.* fields this dataset reads besides the base config's, with their types.
CONFIG_FIELDS = {"train_split": str, "validation_split": str, "test_split": str}
TFDS_NAME = "coco/2014"
TFDS_VERSION = "1.1.0"  # the TFDS build the records key names; checked when preparing
# The stored features `keep` and `labels` read; preparation parses only these and the image
# from each record (not the boxes, areas, crowd flags and ids).
FEATURES = {"objects": {"label": True}}
FIX = "python -m jaxgan.data.coco"
LABELLED_SPLITS = ("train", "validation")


def keep(example: dict) -> bool:
    """True for images with at least one object (the paper's 82,081 / 40,137)."""
    return len(example["objects"]["label"]) > 0


def multi_hot(object_labels) -> np.ndarray:
    """int [N] object class indices (repeats allowed, N may be 0) -> uint8 [80] multi-hot."""
    out = np.zeros(NUM_LABELS, np.uint8)
    out[np.asarray(object_labels, np.int64)] = 1
    return out


def labels(example: dict) -> np.ndarray:
    """The multi-hot vector of the example's object classes."""
    return multi_hot(example["objects"]["label"])


def _check_names(builder) -> None:
    """A built dataset's label names must be ours (they are read from COCO's annotations)."""
    names = tuple(builder.info.features["objects"]["label"].names)
    if names != tuple(str(i) for i in range(NUM_LABELS)) and names != CLASS_NAMES:
        raise ValueError(f"{TFDS_NAME} in {builder.data_dir} has unexpected label names {names}")


def make_builder(data_config):
    """TFDS's coco/2014 builder (TensorFlow)."""
    import tensorflow_datasets as tfds

    return tfds.builder(TFDS_NAME, data_dir=data_config.get("data_dir"))


def prepare(data_config, path: str, side: int) -> None:
    """Builds coco/2014 if needed (a 37.6 GiB download) and prepares its records."""
    from absl import logging

    from jaxgan.data.prepare import write_records

    builder = make_builder(data_config)
    if str(builder.version) != TFDS_VERSION:
        raise ValueError(f"TFDS offers {TFDS_NAME} {builder.version}, not {TFDS_VERSION}")
    if not builder.is_prepared():
        logging.warning(
            "%s is not built in %s: downloading (37.6 GiB) and building it now; see "
            "docs/datasets.md, 'MS-COCO 2014'",
            TFDS_NAME,
            builder.data_dir,
        )
        builder.download_and_prepare()
    _check_names(builder)
    # The labelled splits only: test2014 and test2015 have no annotations.
    write_records(builder, path, side, CLASS_NAMES, labels, keep, FEATURES, LABELLED_SPLITS)


def make_source(data_config) -> Source:
    return open_source(
        data_config,
        key=f"coco/2014/{TFDS_VERSION}",
        splits=split_roles(data_config, test="validation"),
        prepare=lambda path, side: prepare(data_config, path, side),
        fix=FIX + (f" --data_dir={data_config.data_dir}" if data_config.get("data_dir") else ""),
    )
