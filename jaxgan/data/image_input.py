"""One image file -> the model's input, exactly as evaluation would prepare it (for prediction).

`eval_input(path, data_config)` applies to a single file every step an image of a built
dataset goes through on its way into an evaluation batch:

1. the build's checks and storage encoding (`image_files.read_image`): a regular file of at
   most `image_files.MAX_FILE_BYTES`, at most `image_files.MAX_PIXELS` by its header (checked
   before decoding), downscaled if large, CMYK / alpha / 16-bit / palette made RGB;
2. the pipeline's decoder (`input_pipeline.decode_image`);
3. the evaluation transform (`augment.preprocess_eval`: resize to `data.image_size`, single
   crop, `data.normalization`).

So a model sees the same array for a file whether it sat in a dataset's test split or is
given to it for prediction. A file that cannot be used raises `ImageFileError`, one line that
names the file and the reason.

Step 1 (`read_file`) is Python and PIL only and may run in worker threads; steps 2-3
(`prepare_eval`) are TensorFlow eager ops, to be run from one thread at a time: TensorFlow's
Python API is not safe from several threads at once.
"""

import os

import numpy as np
import tensorflow as tf

from jaxgan.data import augment, image_files, input_pipeline


class ImageFileError(ValueError):
    """An image file that cannot be used; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"image {os.fspath(path)!r}: {reason}")
        self.reason = reason


def read_file(path) -> bytes:
    """Step 1: the file's checked bytes, in the build's storage encoding."""
    try:
        return image_files.read_image(os.fspath(path))
    except image_files.BadImage as e:
        raise ImageFileError(path, str(e)) from None


def _decode(path, encoded: bytes) -> tf.Tensor:
    try:
        return input_pipeline.decode_image(tf.constant(encoded))
    except tf.errors.InvalidArgumentError as e:  # PIL read it, TensorFlow cannot: rare
        raise ImageFileError(path, f"unreadable: {e.message}") from None


def load_image(path) -> np.ndarray:
    """The image at `path` as the pipeline decodes it: uint8 [H, W, 3] (downscaled if large)."""
    return _decode(path, read_file(path)).numpy()


def prepare_eval(path, encoded: bytes, data_config) -> np.ndarray:
    """Steps 2-3 on `read_file(path)`'s bytes (`path` only names the file in errors)."""
    return augment.preprocess_eval(_decode(path, encoded), data_config).numpy()


def eval_input(path, data_config) -> np.ndarray:
    """The image at `path` as an evaluation batch row: float32 [S, S, 3], S = data.image_size,
    normalised by `data.normalization`. Stack rows to make a batch."""
    return prepare_eval(path, read_file(path), data_config)
