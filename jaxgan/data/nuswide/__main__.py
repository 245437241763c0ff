"""Builds NUS-WIDE once from the unpacked official release and prepares its records
(docs/datasets.md, 'NUS-WIDE').

python -m jaxgan.data.nuswide --manual_dir=NUS-WIDE [--data_dir=DIR] [--scheme=paper]
    [--image_size=224]
"""

import argparse

import ml_collections

from jaxgan.data import nuswide


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manual_dir", required=True, help="the unpacked official release")
    parser.add_argument(
        "--data_dir", default=None, help="TFDS data_dir (default ~/tensorflow_datasets)"
    )
    parser.add_argument("--scheme", choices=("paper", "official", "both"), default="both")
    parser.add_argument(
        "--image_size", type=int, default=224, help="the model input the records are for"
    )
    args = parser.parse_args(argv)
    for scheme in ("paper", "official") if args.scheme == "both" else (args.scheme,):
        config = ml_collections.ConfigDict(
            {"name": "nuswide", "split_scheme": scheme, "data_dir": args.data_dir,
             "manual_dir": args.manual_dir, "image_size": args.image_size}
        )  # fmt: skip
        source = nuswide.make_source(config)
        print(f"records ready in {source.prepared.path}: {source.prepared.sizes()}")


if __name__ == "__main__":
    main()
