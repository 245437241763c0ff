"""The name of a user dataset's build: a hash of everything that decides its content
(imports no TensorFlow: training finds the prepared records by it)."""

import hashlib
import json
import os
import re

from jaxgan.data import image_files

# Bump when the stored examples change meaning. 2: file names must stay inside the image folder;
# large images downscaled, transparency on white.
FORMAT_VERSION = 2
VERSION = "1.0.0"  # the builder's


def config_name(
    image_dir: str,
    labels_file: str,
    split_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    keep_unlabeled: bool = False,
    allow_outside_paths: bool = False,
) -> str:
    """`<labels file stem>_<12 hex digits>`: another labels file (or an edit of it, by size
    and modification time), image folder or split setting gives another name."""
    image_dir = os.path.abspath(os.path.expanduser(image_dir))
    labels_path = os.path.abspath(os.path.expanduser(labels_file))
    stat = os.stat(labels_path)
    key = json.dumps(
        [FORMAT_VERSION, image_files.LIMITS, image_dir, labels_path, stat.st_size,
         stat.st_mtime_ns, split_seed, validation_fraction, test_fraction, keep_unlabeled,
         allow_outside_paths],
    )  # fmt: skip
    stem = re.sub(r"[^a-z0-9]+", "_", os.path.splitext(os.path.basename(labels_path))[0].lower())
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{stem.strip('_') or 'labels'}_{digest}"
