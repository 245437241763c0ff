"""custom_multilabel: a TFDS dataset built from a user's folder of images and labels file.

One builder class serves every user dataset: each (labels file, image folder, split settings)
is its own `CustomConfig`, named by a hash of them, so a changed labels file or split setting
builds a fresh copy and an unchanged one is read from disk. `plan` decides, from the labels
file alone, which file goes to which split; bad image files are then skipped and counted
(jaxgan.data.image_files), and the counts are kept in the dataset's metadata.
"""

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from jaxgan.data import image_files
from jaxgan.data.custom import labels_file
from jaxgan.data.custom.naming import config_name


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
        allow_outside_paths: bool = False,
    ):
        name = config_name(
            image_dir, labels_file, split_seed, validation_fraction, test_fraction,
            keep_unlabeled, allow_outside_paths,
        )  # fmt: skip
        image_dir = os.path.abspath(os.path.expanduser(image_dir))
        labels_path = os.path.abspath(os.path.expanduser(labels_file))
        super().__init__(
            name=name,
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
        self.allow_outside_paths = allow_outside_paths


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a build will read, decided from the labels file alone (before any image is opened).

    splits: split -> [(record, resolved path)] of the images it will try to read.
    unlabeled: split -> images assigned to it but dropped for having no label.
    drawn: how many images the labels file gives no split (drawn with the seed).
    """

    class_names: tuple[str, ...]
    splits: dict
    unlabeled: dict
    drawn: int


def plan(config: CustomConfig) -> Plan:
    """Reads and checks the labels file (LabelsFileError on a mistake), then assigns splits."""
    names, records = labels_file.read_labels_file(config.labels_file)
    paths = labels_file.resolve_files(
        config.labels_file, records, config.image_dir, config.allow_outside_paths
    )
    path_of = {r.file: path for r, path in zip(records, paths, strict=True)}
    assigned = labels_file.assign_splits(
        records, config.split_seed, config.validation_fraction, config.test_fraction
    )
    splits, unlabeled = {}, {}
    for split, rows in assigned.items():
        kept = [r for r in rows if config.keep_unlabeled or any(r.labels)]
        splits[split] = [(r, path_of[r.file]) for r in kept]
        unlabeled[split] = len(rows) - len(kept)
    return Plan(
        class_names=names,
        splits=splits,
        unlabeled=unlabeled,
        drawn=sum(r.split is None for r in records),
    )


class Builder(tfds.core.GeneratorBasedBuilder):
    """Multi-label images from a folder and a labels file (docs/datasets.md)."""

    name = "custom_multilabel"
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
        the_plan = plan(config)
        if the_plan.class_names != config.class_names:
            raise ValueError(f"{config.labels_file} changed while the dataset was being built")
        self.info.metadata["class_names"] = list(the_plan.class_names)
        self.info.metadata["bad_files"] = {}
        return {
            split: self._generate_examples(split, rows, the_plan.unlabeled[split])
            for split, rows in the_plan.splits.items()
        }

    def _generate_examples(self, split: str, rows, unlabeled: int):
        config = self.builder_config
        log = image_files.BadFileLog(f"{self.name}/{config.name} {split}")
        # Checked again as each file is read, in case a link changed since `plan`.
        inside = None if config.allow_outside_paths else os.path.realpath(config.image_dir)
        labels_of = {r.file: r.labels for r, _ in rows}
        items = [(r.file, path) for r, path in rows]
        for name, data in image_files.read_images(items, log, inside=inside):
            yield (
                name,
                {"image": data, "labels": np.asarray(labels_of[name], np.uint8), "file": name},
            )
        logging.info("%s; %d images with no label dropped", log.summary(), unlabeled)
        self.info.metadata["bad_files"][split] = {**log.as_dict(), "unlabeled": unlabeled}
