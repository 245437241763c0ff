"""One image file -> the model's input, exactly as evaluation prepares a test image.

`stored_image(path, side)` applies to a single file every step an image of a built dataset
goes through on its way into prepared records:

1. the build's checks and storage encoding (`image_files.read_image`): a regular file of at
   most `image_files.MAX_FILE_BYTES`, at most `image_files.MAX_PIXELS` by its header (checked
   before decoding), downscaled if large, CMYK / alpha / 16-bit / palette made RGB;
2. preparation's decoder and square resize (`image_files.stored_square`, PIL);

and `eval_input(path, data_config)` adds evaluation's transform on top (`augment.eval_image`:
resize to `data.image_size`, `data.normalization`), the function evaluation's compiled
forward pass runs on every batch. So a model sees the same array for a file whether it sat
in a dataset's test split or is given to it for prediction. Everything here is Python, PIL
and JAX: safe from several threads, no TensorFlow. A file that cannot be used raises
`image_files.BadImage`, one line that names the file and the reason.
"""

import functools
import os

import jax
import numpy as np

from jaxgan.data import augment, image_files
from jaxgan.data.image_files import BadImage

__all__ = ["BadImage", "eval_input", "load_image", "read_file", "stored_image"]


def read_file(path) -> bytes:
    """Step 1: the file's checked bytes, in the build's storage encoding."""
    try:
        return image_files.read_image(os.fspath(path))
    except BadImage as e:
        raise BadImage(e.reason, path) from None


def _decoded(path, encoded: bytes) -> np.ndarray:
    try:
        return image_files.decode_rgb(encoded)
    except BadImage as e:
        raise BadImage(e.reason, path) from None


def load_image(path) -> np.ndarray:
    """The image at `path` as preparation decodes it: uint8 [H, W, 3] (downscaled if large)."""
    return _decoded(path, read_file(path))


def stored_image(path, side: int, encoded: bytes | None = None) -> np.ndarray:
    """The uint8 [side, side, 3] square prepared records would hold for the file at `path`
    (`encoded`: its `read_file` bytes, if already read)."""
    encoded = read_file(path) if encoded is None else encoded
    return image_files.to_square(_decoded(path, encoded), side)


@functools.partial(jax.jit, static_argnames="transform")
def _eval_image(image, transform):
    return augment.eval_image(image, transform)


def eval_input(path, data_config) -> np.ndarray:
    """The image at `path` as an evaluation batch row: float32 [S, S, 3], S = data.image_size,
    normalised by `data.normalization` (the classifier runs the same transform on a batch of
    `stored_image` squares)."""
    from jaxgan.data.datasets import stored_side

    square = stored_image(path, stored_side(data_config))
    return np.asarray(_eval_image(square, augment.Transform.from_config(data_config)))
