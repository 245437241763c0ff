"""Downloads and builds TFDS coco/2014 once (docs/datasets.md, 'MS-COCO 2014').

python -m jaxgan.data.coco [--data_dir=DIR]
"""

import argparse

import ml_collections

from jaxgan.data import coco


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's)")
    args = parser.parse_args(argv)
    builder = coco.make_builder(ml_collections.ConfigDict({"data_dir": args.data_dir}))
    builder.download_and_prepare()
    print(builder.info.splits)


if __name__ == "__main__":
    main()
