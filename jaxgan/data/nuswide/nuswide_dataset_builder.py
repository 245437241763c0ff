"""nus_wide: NUS-WIDE's 81 concepts over its Flickr images, built from the official release.

Two configs, two splits each ("train", "test"):

- `official`: the release's own TrainImagelist / TestImagelist (161,789 / 107,859 images
  listed), less the images without any of the 81 concepts.
- `paper`: the split of WARP, Att-RNN and the paper (150,000 train / 59,347 test). The paper
  gives only the sizes; we form it so anyone can re-create it: pool the labelled images of the
  official train list then the official test list (209,347 in the release), permute them with
  NumPy's `default_rng(0)`, and take the first 150,000 for train and the remaining 59,347 for
  test. (On a release with a different number of labelled entries, the same fraction,
  150,000 / 209,347, goes to train.)

Both splits are decided from the label files alone; afterwards missing, empty or unreadable
image files are skipped and counted (jaxgan.data.image_files), never fatal, so local gaps in
the image download shrink a split without changing which images belong to it. The release's
files are read as untrusted input: list and label files only if they are regular files of at
most `image_files.MAX_FILE_BYTES`, list entries only of the form `<sub-folder>\\<file>` (a
line that names `..` or an absolute path is refused), and images only if they resolve inside
`manual_dir/Flickr` (a link that leads out of it is skipped).
"""

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from jaxgan.data import image_files

# The 81 concepts of Concepts81.txt, in its (alphabetical) order.
CONCEPTS = (
    "airport animal beach bear birds boats book bridge buildings cars castle cat cityscape "
    "clouds computer coral cow dancing dog earthquake elk fire fish flags flowers food fox "
    "frost garden glacier grass harbor horses house lake leaf map military moon mountain "
    "nighttime ocean person plane plants police protest railroad rainbow reflection road "
    "rocks running sand sign sky snow soccer sports statue street sun sunset surf swimmers "
    "tattoo temple tiger tower town toy train tree valley vehicle water waterfall wedding "
    "whales window zebra"
).split()
PAPER_TRAIN, PAPER_TEST = 150_000, 59_347
PAPER_SEED = 0

LISTS = {"train": "ImageList/TrainImagelist.txt", "test": "ImageList/TestImagelist.txt"}
LABELS = "Groundtruth/TrainTestLabels/Labels_{concept}_{part}.txt"  # part: Train | Test
IMAGES = "Flickr"  # <IMAGES>/<sub-folder>/<file>.jpg, as the lists name them

_MANUAL_DOWNLOAD_INSTRUCTIONS = """\
NUS-WIDE is distributed by NUS's Lab for Media Search (https://lms.comp.nus.edu.sg/wp-content/
uploads/2019/research/nuswide/NUS-WIDE.html): the lists and ground truth are public downloads;
the images themselves are given on request (or fetched from the Flickr URLs the release lists).
Unpack them into one folder, `manual_dir`, laid out as the release ships them:

  manual_dir/
    Concepts81.txt                    (ConceptsList.zip; optional, checked when present)
    ImageList/Imagelist.txt           (ImageList.zip; optional)
    ImageList/TrainImagelist.txt      161,789 lines such as  actor\\0001_2124494179.jpg
    ImageList/TestImagelist.txt       107,859 lines
    Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt   (Groundtruth.zip; one 0/1 per
    Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt     line of the matching list)
    Flickr/<sub-folder>/<file>.jpg    the images, in the sub-folders the lists name

Then build once:  python -m jaxgan.data.nuswide --manual_dir=manual_dir [--data_dir=...]
Images the lists name but the folder lacks, or that cannot be read, are skipped and counted.
"""


class NusWideConfig(tfds.core.BuilderConfig):
    def __init__(self, *, scheme: str, **kwargs):
        super().__init__(name=scheme, version="1.0.0", **kwargs)
        self.scheme = scheme


def _read_text(root: str, relative: str) -> str:
    """A layout file of the release, read as bounded untrusted text."""
    path = os.path.join(root, relative)
    try:
        data = image_files.read_regular_file(path, image_files.MAX_FILE_BYTES)
    except image_files.BadFile as e:
        raise ValueError(
            f"NUS-WIDE manual_dir: {path}: {e}; lay it out as docs/datasets.md says"
        ) from None
    return data.decode("utf-8", errors="replace")


def image_file(name: str, where: str) -> str:
    """A list entry (`actor\\0001_2124494179.jpg`, perhaps after a Windows prefix) -> its path
    relative to manual_dir: `Flickr/<sub-folder>/<file>`. Refuses names that could leave it."""
    parts = name.replace("\\", "/").split("/")[-2:]
    if not all(parts) or any(p in (".", "..") or ":" in p for p in parts):
        raise ValueError(f"{where}: {name!r} is not a <sub-folder>\\<file> image name")
    return os.path.join(IMAGES, *parts)


def read_split_lists(root: str) -> dict[str, tuple[list[str], np.ndarray]]:
    """Official part ("train" | "test") -> (image paths relative to root, uint8 labels [N, 81])."""
    missing = [p for p in LISTS.values() if not os.path.isfile(os.path.join(root, p))]
    missing += [
        LABELS.format(concept=c, part=part)
        for c in CONCEPTS
        for part in ("Train", "Test")
        if not os.path.isfile(os.path.join(root, LABELS.format(concept=c, part=part)))
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise FileNotFoundError(
            f"NUS-WIDE manual_dir {root!r} lacks {shown}; lay it out as docs/datasets.md says"
        )
    if os.path.isfile(os.path.join(root, "Concepts81.txt")):
        listed = _read_text(root, "Concepts81.txt").split()
        if sorted(listed) != sorted(CONCEPTS):
            raise ValueError(
                f"{os.path.join(root, 'Concepts81.txt')} does not list NUS-WIDE's 81 concepts"
            )
    parts = {}
    for part, list_file in LISTS.items():
        lines = _read_text(root, list_file).splitlines()
        files = [
            image_file(name.strip(), f"{os.path.join(root, list_file)}, line {n}")
            for n, name in enumerate(lines, start=1)
            if name.strip()
        ]
        columns = []
        for concept in CONCEPTS:
            relative = LABELS.format(concept=concept, part=part.capitalize())
            values = _read_text(root, relative).split()
            if len(values) != len(files) or not set(values) <= {"0", "1"}:
                raise ValueError(
                    f"{os.path.join(root, relative)}: expected {len(files)} lines of 0/1 (one per "
                    f"line of {list_file})"
                )
            columns.append(np.array(values) == "1")
        parts[part] = (files, np.stack(columns, axis=1).astype(np.uint8))
    return parts


def form_splits(parts, scheme: str) -> dict[str, tuple[list[str], np.ndarray]]:
    """The labelled images of each split of `scheme` ("official" | "paper"), in a fixed order."""
    labelled = {}
    for part, (files, labels) in parts.items():
        keep = labels.any(axis=1)
        labelled[part] = ([f for f, k in zip(files, keep, strict=True) if k], labels[keep])
    if scheme == "official":
        return labelled
    files = labelled["train"][0] + labelled["test"][0]
    labels = np.concatenate([labelled["train"][1], labelled["test"][1]])
    order = np.random.default_rng(PAPER_SEED).permutation(len(files))
    n_train = int(round(len(files) * PAPER_TRAIN / (PAPER_TRAIN + PAPER_TEST)))
    chosen = {"train": np.sort(order[:n_train]), "test": np.sort(order[n_train:])}
    return {split: ([files[i] for i in idx], labels[idx]) for split, idx in chosen.items()}


class Builder(tfds.core.GeneratorBasedBuilder):
    """NUS-WIDE, 81 concepts, official or paper split (manual download)."""

    name = "nus_wide"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [
        NusWideConfig(scheme="paper", description="150,000 / 59,347 labelled images (WARP)"),
        NusWideConfig(scheme="official", description="the release's train / test lists"),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "labels": tfds.features.Tensor(shape=(len(CONCEPTS),), dtype=np.uint8),
                    "file": tfds.features.Text(),
                }
            ),
            homepage="https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html",
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        splits = form_splits(read_split_lists(root), self.builder_config.scheme)
        self.info.metadata["bad_files"] = {}
        return {
            split: self._generate_examples(root, split, files, labels)
            for split, (files, labels) in splits.items()
        }

    def _generate_examples(self, root, split, files, labels):
        log = image_files.BadFileLog(f"{self.name}/{self.builder_config.name} {split}")
        index = {f: i for i, f in enumerate(files)}
        items = [(f, os.path.join(root, f)) for f in files]
        inside = os.path.realpath(os.path.join(root, IMAGES))  # Flickr/ may link to another disk
        for name, data in image_files.read_images(items, log, inside=inside):
            yield name, {"image": data, "labels": labels[index[name]], "file": name}
        logging.info("%s", log.summary())
        self.info.metadata["bad_files"][split] = log.as_dict()
