"""Downloads and builds TFDS coco/2014 once, and prepares its records (docs/datasets.md,
'MS-COCO 2014').

python -m jaxgan.data.coco [--data_dir=DIR] [--image_size=224]
"""

import argparse

import ml_collections

from jaxgan.data import coco


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's)")
    parser.add_argument(
        "--image_size", type=int, default=224, help="the model input the records are for"
    )
    args = parser.parse_args(argv)
    config = ml_collections.ConfigDict(
        {"name": "coco", "data_dir": args.data_dir, "image_size": args.image_size}
    )
    source = coco.make_source(config)
    print(f"records ready in {source.prepared.path}: {source.prepared.sizes()}")


if __name__ == "__main__":
    main()
