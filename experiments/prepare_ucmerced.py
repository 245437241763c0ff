"""Writes the labels file for UC Merced multi-label: 2,100 real aerial photographs, 17 labels.

The real-photo experiments (`experiments/seed_table.py`, `experiments/results/photos_*.md`)
use this set through the custom-folder path (`configs/custom.py`). Nothing of it is kept in
this repository; to re-create it:

1. The photographs: the UC Merced Land Use images (Yang & Newsam, 2010; 21 scene classes x
   100 RGB orthophotos of 256x256 pixels, TIFF), as committed in the public repository
   `527760681/Keras-Remote-sensing-image-retrieval` at commit
   `ab097bbb1a790b47dee3f01da27b0abda0fb4b96` (folder `UCMerced_LandUse/Images/`; a later
   commit deleted it, so check out that commit):

       cd Keras-Remote-sensing-image-retrieval && git archive \\
           ab097bbb1a790b47dee3f01da27b0abda0fb4b96 UCMerced_LandUse | tar -x -C ../photos

2. The labels: the multi-label annotation of the same images by Chaudhuri et al. (2017, "Multi-
   label remote sensing image retrieval using a semi-supervised graph-theoretic method"), 17
   labels, 1 to 7 per image (3.33 on average), as committed in the public repository
   `alexdeloire/deep-learning-remote-sensing` at commit
   `78b42f32a0b10169d3e2e52aaea2929bbf2e5436`, file `ucmdata/LandUse_Multilabeled.txt`
   (tab-separated: `IMAGE\\LABEL`, then one 0/1 column per label; rows name images without
   folder or extension, e.g. `agricultural00`).

3. This script joins them into a CSV that `configs/custom.py` reads:

       python experiments/prepare_ucmerced.py --images_dir=photos/UCMerced_LandUse/Images \\
           --multilabels=LandUse_Multilabeled.txt --out=photos/ucmerced17.csv

   Label mapping: the 17 labels are kept as they are, in the file's order (`--classes` keeps a
   subset, in the order given; images left with no label are then written with none and
   dropped by the build). File names become `<scene class>/<name>.tif`, the scene class being
   the name without its two-digit number.

   Split rule (fixed in the `split` column, so no seed draws it): within each of the 21 scene
   classes, images 00-69 train, 70-79 validation, 80-99 test: 1,470 / 210 / 420 images, every
   scene class in every split in the same proportion. The scene classes themselves are not
   labels.
"""

import argparse
import csv
import os
import re
import sys

TRAIN_BELOW, VALIDATION_BELOW = 70, 80  # image number within its scene class: 00-69, 70-79, rest


def read_multilabels(path: str) -> tuple[list[str], dict[str, list[int]]]:
    """The label names and {image name: multi-hot} of a LandUse_Multilabeled.txt file."""
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if not rows or not rows[0] or rows[0][0].strip() != "IMAGE\\LABEL":
        raise SystemExit(f"{path}: not a LandUse_Multilabeled.txt file (header IMAGE\\LABEL ...)")
    names = [name.strip() for name in rows[0][1:]]
    labels = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(names) + 1 or any(v.strip() not in ("0", "1") for v in row[1:]):
            raise SystemExit(f"{path}, line {number}: expected a name and {len(names)} 0/1 values")
        labels[row[0].strip()] = [int(v) for v in row[1:]]
    return names, labels


def split_of(number: int) -> str:
    if number < TRAIN_BELOW:
        return "train"
    return "validation" if number < VALIDATION_BELOW else "test"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images_dir", required=True, help="UCMerced_LandUse/Images")
    parser.add_argument("--multilabels", required=True, help="LandUse_Multilabeled.txt")
    parser.add_argument("--out", required=True, help="the CSV to write")
    parser.add_argument("--classes", default="", help="comma-separated subset of labels to keep")
    args = parser.parse_args(argv)

    names, labels = read_multilabels(args.multilabels)
    keep = [c.strip() for c in args.classes.split(",") if c.strip()] or names
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise SystemExit(f"--classes: {unknown} are not labels of {args.multilabels}: {names}")
    columns = [names.index(c) for c in keep]
    written, missing = 0, []
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "split", *keep])
        for image, hot in sorted(labels.items()):
            match = re.fullmatch(r"([a-z]+)(\d\d)", image)
            if not match:
                raise SystemExit(f"{args.multilabels}: unexpected image name {image!r}")
            scene, number = match.group(1), int(match.group(2))
            file = f"{scene}/{image}.tif"
            if not os.path.isfile(os.path.join(args.images_dir, file)):
                missing.append(file)
                continue
            writer.writerow([file, split_of(number), *(hot[i] for i in columns)])
            written += 1
    print(f"wrote {written} images, {len(keep)} labels to {args.out}", file=sys.stderr)
    if missing:
        print(f"{len(missing)} images not found, e.g. {missing[:3]}", file=sys.stderr)


if __name__ == "__main__":
    main()
