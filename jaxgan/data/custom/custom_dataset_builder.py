"""custom_multilabel: a TFDS dataset built from a user's folder of images and labels file.

One builder class serves every user dataset: each (labels file, image folder, split settings)
is its own `CustomConfig`, named by a hash of them, so a changed labels file or split setting
builds a fresh copy and an unchanged one is read from disk. Bad image files are skipped and
counted (jaxgan.data.image_files); the counts are kept in the dataset's metadata.
"""

import hashlib
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from jaxgan.data import image_files
from jaxgan.data.custom import labels_file

_FORMAT_VERSION = 1  # bump when the stored examples change meaning


class CustomConfig(tfds.core.BuilderConfig):
    """A user dataset: where its files are and how its splits are formed."""

    def __init__(
        self,
        *,
        image_dir: str,
        labels_file: str,
        class_names: tuple[str, ...],
        split_seed: int = 0,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.1,
        keep_unlabeled: bool = False,
    ):
        image_dir = os.path.abspath(os.path.expanduser(image_dir))
        labels_path = os.path.abspath(os.path.expanduser(labels_file))
        stat = os.stat(labels_path)
        key = json.dumps(
            [_FORMAT_VERSION, image_dir, labels_path, stat.st_size, stat.st_mtime_ns,
             split_seed, validation_fraction, test_fraction, keep_unlabeled],
        )  # fmt: skip
        stem = re.sub(
            r"[^a-z0-9]+", "_", os.path.splitext(os.path.basename(labels_path))[0].lower()
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        super().__init__(
            name=f"{stem.strip('_') or 'labels'}_{digest}",
            version="1.0.0",
            description=f"images under {image_dir}, labels from {labels_path}",
        )
        self.image_dir = image_dir
        self.labels_file = labels_path
        self.class_names = tuple(class_names)
        self.split_seed = split_seed
        self.validation_fraction = validation_fraction
        self.test_fraction = test_fraction
        self.keep_unlabeled = keep_unlabeled


class CustomMultilabel(tfds.core.GeneratorBasedBuilder):
    """Multi-label images from a folder and a labels file (README, 'Your own data')."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        num_labels = len(self.builder_config.class_names)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "labels": tfds.features.Tensor(shape=(num_labels,), dtype=np.uint8),
                    "file": tfds.features.Text(),
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        config = self.builder_config
        names, records = labels_file.read_labels_file(config.labels_file)
        if names != config.class_names:
            raise ValueError(f"{config.labels_file} changed while the dataset was being built")
        splits = labels_file.assign_splits(
            records, config.split_seed, config.validation_fraction, config.test_fraction
        )
        self.info.metadata["class_names"] = list(names)
        self.info.metadata["bad_files"] = {}
        return {name: self._generate_examples(name, rows) for name, rows in splits.items()}

    def _generate_examples(self, split: str, records):
        config = self.builder_config
        log = image_files.BadFileLog(f"{self.name}/{config.name} {split}")
        unlabeled = 0
        labels_of = {}
        items = []
        for r in records:
            if not any(r.labels) and not config.keep_unlabeled:
                unlabeled += 1
                continue
            labels_of[r.file] = r.labels
            items.append((r.file, os.path.join(config.image_dir, r.file)))
        for name, data in image_files.read_images(items, log):
            yield (
                name,
                {"image": data, "labels": np.asarray(labels_of[name], np.uint8), "file": name},
            )
        logging.info("%s; %d images with no label dropped", log.summary(), unlabeled)
        self.info.metadata["bad_files"][split] = {**log.as_dict(), "unlabeled": unlabeled}
