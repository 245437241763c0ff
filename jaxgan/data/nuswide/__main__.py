"""Builds NUS-WIDE once from the unpacked official release (docs/datasets.md, 'NUS-WIDE').

python -m jaxgan.data.nuswide --manual_dir=NUS-WIDE [--data_dir=DIR] [--scheme=paper]
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
    args = parser.parse_args(argv)
    for scheme in ("paper", "official") if args.scheme == "both" else (args.scheme,):
        config = ml_collections.ConfigDict({"split_scheme": scheme, "data_dir": args.data_dir})
        builder = nuswide.make_builder(config)
        nuswide.prepare(builder, args.manual_dir)
        print(builder.info.splits)


if __name__ == "__main__":
    main()
