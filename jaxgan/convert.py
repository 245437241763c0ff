"""Converts ImageNet weights to a Flax checkpoint that `config.model.pretrained` points to.

    python -m jaxgan.convert --arch=resnet101 --src=resnet101-63fe2227.pth --out=weights/resnet101

`--src` is a torchvision `.pth` (read without torch, refusing any pickled code) or a timm /
Hugging Face `.safetensors` file. The ImageNet head is dropped; training starts a fresh L-way one.
A file that is damaged, crafted or does not fit the architecture is refused with one line
(exit status 1). The work is done by `jaxgan.weights`.
"""

import argparse
import sys

from jaxgan.weights import convert_file
from jaxgan.weights.mapping import ARCHS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.convert", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--arch", required=True, choices=ARCHS)
    parser.add_argument("--src", required=True, help="torchvision .pth or timm .safetensors file")
    parser.add_argument("--out", required=True, help="directory to write the Flax checkpoint to")
    parser.add_argument(
        "--no_hash_check",
        action="store_true",
        help="accept a torchvision-named file whose sha256 does not match its name",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parser.parse_args(argv)
    try:
        report = convert_file(
            args.src, args.arch, args.out, check_hash=not args.no_hash_check, force=args.force
        )
    except ValueError as error:  # a refused file (WeightFileError) or one that does not fit
        print(f"error: {error}", file=sys.stderr)
        return 1
    for line in report["renamed"]:
        print(f"renamed  {line}")
    for key, path, torch_shape, flax_shape in report["mapped"]:
        print(f"mapped   {key} {list(torch_shape)} -> {path} {list(flax_shape)}")
    for key, reason in report["ignored"]:
        print(f"ignored  {key} ({reason})")
    print(
        f"converted {args.src} for {args.arch}: {len(report['mapped'])} tensors mapped, "
        f"{len(report['ignored'])} ignored on purpose; wrote {args.out}\n"
        f"train with --config.model.pretrained={args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
