"""A source weight file: its format recognised, read by the matching reader, its name checked.

torchvision `.pth` files (zip or legacy) go to `pth.load_pth`, safetensors files to
`safetensors.load_safetensors`; both refuse anything they cannot prove safe with one
`WeightFileError`.
"""

import hashlib
import os
import re

from jaxgan.weights.bounds import DEFAULT_LIMITS, Limits, WeightFileError, open_regular
from jaxgan.weights.pth import load_pth
from jaxgan.weights.safetensors import load_safetensors


def detect_format(path) -> str:
    """ "safetensors" or "pth": by the name's suffix, else by the first bytes (a zip archive is
    torch's format; a safetensors file has its JSON header's "{" at byte 8)."""
    with open_regular(path) as file:
        head = file.read(16)
    if os.fspath(path).endswith(".safetensors"):
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[8:9] != b"{":
        return "pth"
    return "safetensors"


def read_weight_file(path, limits: Limits = DEFAULT_LIMITS) -> tuple[dict, str]:
    """(state dict of NumPy arrays, format name) of a `.pth`/`.pt`/`.bin` or `.safetensors`
    file; a `WeightFileError` (one line: file, tensor, reason) for anything it cannot read."""
    file_format = detect_format(path)
    reader = load_safetensors if file_format == "safetensors" else load_pth
    return reader(path, limits), file_format


def check_torchvision_hash(path) -> str:
    """sha256 of `path`; torchvision names its files `<name>-<first hex digits of sha256>.pth`,
    so a file so named whose digest differs is corrupt or misnamed: refuse it."""
    digest = hashlib.sha256()
    with open_regular(path) as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    sha = digest.hexdigest()
    match = re.fullmatch(r".+-([0-9a-f]{8,64})\.pth", os.path.basename(os.fspath(path)))
    if match and not sha.startswith(match[1]):
        raise WeightFileError(
            path,
            f"its sha256 starts {sha[: len(match[1])]}, but torchvision's file of this name has "
            f"{match[1]}: the download is corrupt or the file was renamed",
            advice="download it again, or pass --no_hash_check if the file is what you mean to "
            "convert",
        )
    return sha
