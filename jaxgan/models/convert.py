"""ImageNet weights (torchvision `.pth` or timm / Hugging Face safetensors) -> Flax variables.

The conversion is strict on purpose: a slightly wrong mapping still trains and silently loses
accuracy. Every backbone leaf of the Flax model must come from exactly one checkpoint tensor of
the right shape; every checkpoint tensor must be mapped or be one of the few ignored on purpose
(`IGNORED`): the ImageNet 1000-way head (the generator gets a fresh L-way `head`), BatchNorm's
`num_batches_tracked` counters and Inception-v3's auxiliary head. Anything else is an error that
names the keys.

Layout changes: conv kernels OIHW -> HWIO, linear weights [out, in] -> [in, out], and VGG's first
classifier weight is permuted from torch's (C, H, W) flatten order to our NHWC (H, W, C) one.
timm stores VGG's classifier as convolutions (`pre_logits.fc1` 7x7, `pre_logits.fc2` 1x1,
`head.fc`); those are renamed and reshaped to torchvision's `classifier.{0,3,6}` first.

A converted checkpoint is a directory: `variables/` (Orbax, the backbone's `params` and
`batch_stats` without `head`) and `pretrained.json` (arch, source file, what was ignored).
`load_pretrained` puts it into freshly initialised variables. No torch, no TensorFlow here.
"""

import hashlib
import importlib
import json
import os
import re
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from jaxgan.models.pth import load_pth

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "inception_v3")
METADATA_FILE = "pretrained.json"
VARIABLES_DIR = "variables"

# (pattern, reason) per arch: checkpoint keys that are dropped on purpose.
_BN_COUNTER = (r".*\.num_batches_tracked", "BatchNorm step counter, unused by the model")
_IMAGENET_HEAD = "ImageNet 1000-way output layer, replaced by a fresh L-way head"
IGNORED = {
    **{
        name: (_BN_COUNTER, (r"fc\.(weight|bias)", _IMAGENET_HEAD))
        for name in ARCHS
        if name.startswith("resnet")
    },
    "vgg16": ((r"classifier\.6\.(weight|bias)", _IMAGENET_HEAD),),
    "inception_v3": (
        _BN_COUNTER,
        (r"fc\.(weight|bias)", _IMAGENET_HEAD),
        (r"AuxLogits\..*", "auxiliary ImageNet head, used only by ImageNet training"),
    ),
}

_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}
_LEAF_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def build_model(arch: str, num_labels: int = 1000, dtype=jnp.float32):
    """The Flax module for `arch` (imported lazily so the registry stays the one entry point)."""
    from jaxgan.models import GENERATORS

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {list(ARCHS)}")
    module_name, constructor = GENERATORS[arch]
    return getattr(importlib.import_module(module_name), constructor)(num_labels, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Reading checkpoints


def load_safetensors(path: str) -> dict:
    """{key: np.ndarray} of a safetensors file (bfloat16 included), without any framework."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file (too short)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if 8 + header_size > len(data):
        raise ValueError(f"{path} is not a safetensors file (bad header size)")
    header = json.loads(data[8 : 8 + header_size])
    body = memoryview(data)[8 + header_size :]
    tensors = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {key} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        if end > len(body) or end - start != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"{path}: tensor {key} is truncated or malformed")
        tensors[key] = np.frombuffer(body[start:end], dtype).reshape(shape).copy()
    return tensors


def read_checkpoint(path: str) -> tuple[dict, str]:
    """(state dict of NumPy arrays, format name) of a `.pth`/`.pt`/`.bin` or `.safetensors` file."""
    if not os.path.isfile(path):
        raise ValueError(f"weight file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.endswith(".safetensors") or (len(head) > 9 and head[8:9] == b"{"):
        return load_safetensors(path), "safetensors"
    return load_pth(path), "pth"


def check_torchvision_hash(path: str) -> str:
    """sha256 of `path`; torchvision names its files `<name>-<first hex digits of sha256>.pth`,
    so a file so named whose digest differs is corrupt or misnamed: raise."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    sha = digest.hexdigest()
    match = re.fullmatch(r".+-([0-9a-f]{8,64})\.pth", os.path.basename(path))
    if match and not sha.startswith(match[1]):
        raise ValueError(
            f"{path}: its sha256 starts {sha[: len(match[1])]}, but torchvision's file of this "
            f"name has {match[1]}; the download is corrupt or the file was renamed. Download it "
            "again, or pass --no_hash_check if the file is what you mean to convert"
        )
    return sha


def from_timm(state: dict) -> tuple[dict, list[str]]:
    """Renames timm's VGG conv-classifier to torchvision's Linear layout; other archs share
    torchvision's key names in timm. Returns (state, ["timm key -> torchvision key", ...])."""
    renames = {
        "pre_logits.fc1.": "classifier.0.",
        "pre_logits.fc2.": "classifier.3.",
        "head.fc.": "classifier.6.",
    }
    out, renamed = {}, []
    for key, value in state.items():
        new = key
        for old_prefix, new_prefix in renames.items():
            if key.startswith(old_prefix):
                new = new_prefix + key[len(old_prefix) :]
                if (
                    new.endswith(".weight") and value.ndim == 4
                ):  # conv [O, C, kh, kw] -> [O, C*kh*kw]
                    value = value.reshape(value.shape[0], -1)
                renamed.append(f"{key} -> {new}")
        out[new] = value
    return out, renamed


def guess_arch(state: dict) -> str | None:
    """Which of ARCHS a torchvision-named state dict looks like, for error messages."""
    if any(k.startswith("Mixed_5b.") for k in state):
        return "inception_v3"
    if "features.28.weight" in state:
        return "vgg16"
    blocks = [0, 0, 0, 0]
    for key in state:
        match = re.match(r"layer([1-4])\.(\d+)\.", key)
        if match:
            stage = int(match[1]) - 1
            blocks[stage] = max(blocks[stage], int(match[2]) + 1)
    bottleneck = any(".conv3." in k for k in state)
    known = {
        ((2, 2, 2, 2), False): "resnet18",
        ((3, 4, 6, 3), False): "resnet34",
        ((3, 4, 6, 3), True): "resnet50",
        ((3, 4, 23, 3), True): "resnet101",
        ((3, 8, 36, 3), True): "resnet152",
    }
    return known.get((tuple(blocks), bottleneck))


# ---------------------------------------------------------------------------------------------
# Mapping


def backbone_shapes(arch: str) -> dict:
    """{(collection, *module path, leaf): shape} of `arch`'s variables without `head`."""
    model = build_model(arch)
    size = 299 if arch == "inception_v3" else 224
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    flat = traverse_util.flatten_dict(jax.tree.map(lambda s: tuple(s.shape), shapes))
    return {path: shape for path, shape in flat.items() if path[1] != "head"}


def torch_key(path: tuple) -> str:
    """torchvision state-dict key of a Flax variable path (collection first)."""
    parts = []
    for name in path[1:-1]:
        indexed = re.fullmatch(r"(layer\d|features|classifier)_(\d+)", name)
        if indexed:
            parts += [indexed[1], indexed[2]]
        elif name == "downsample_conv":
            parts += ["downsample", "0"]
        elif name == "downsample_bn":
            parts += ["downsample", "1"]
        else:
            parts.append(name)
    return ".".join(parts + [_LEAF_NAMES[path[-1]]])


def to_flax_layout(key: str, value: np.ndarray, shape: tuple) -> np.ndarray:
    """A torchvision tensor in the layout of the Flax leaf of `shape`."""
    if key == "classifier.0.weight" and value.ndim == 2 and len(shape) == 2:
        # VGG: torch flattens the pooled map (C, H, W), we flatten (H, W, C).
        out_features, in_features = value.shape
        channels = 512
        side = int(round((in_features // channels) ** 0.5))
        if channels * side * side == in_features:
            value = value.reshape(out_features, channels, side, side).transpose(2, 3, 1, 0)
            return value.reshape(in_features, out_features)
    if value.ndim == 4:  # conv OIHW -> HWIO
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # linear [out, in] -> [in, out]
        return value.T
    return value


def _listing(keys, limit=8):
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def convert_state_dict(state: dict, arch: str) -> tuple[dict, dict]:
    """(Flax backbone variables as nested NumPy float32, report) from a torchvision-named state
    dict; raises ValueError naming every missing, unexpected or mis-shaped key."""
    shapes = backbone_shapes(arch)
    expected = {torch_key(path): path for path in shapes}
    ignored, unexpected = [], []
    for key in state:
        if key in expected:
            continue
        reason = next((r for p, r in IGNORED[arch] if re.fullmatch(p, key)), None)
        if reason is None:
            unexpected.append(key)
        else:
            ignored.append((key, reason))
    missing = [key for key in expected if key not in state]
    guess = guess_arch(state)
    hint = (
        f" The file looks like {guess}: pass --arch={guess}."
        if guess and guess != arch
        else " Is it a torchvision/timm ImageNet checkpoint of this architecture?"
    )
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_listing(unexpected)}")
        raise ValueError(f"checkpoint does not match {arch}: " + "; ".join(problems) + "." + hint)
    flat, mapped, mismatched = {}, [], []
    for key in (k for k in state if k in expected):  # in the checkpoint's order
        path = expected[key]
        value = to_flax_layout(key, np.asarray(state[key]), shapes[path])
        if value.shape != shapes[path]:
            mismatched.append(f"{key} {tuple(state[key].shape)} (need {shapes[path]})")
            continue
        flat[path] = value.astype(np.float32)
        mapped.append((key, "/".join(path), tuple(state[key].shape), value.shape))
    if mismatched:
        raise ValueError(
            f"checkpoint does not match {arch}: shape mismatch {_listing(mismatched)}."
        )
    report = {"mapped": mapped, "ignored": ignored}
    return traverse_util.unflatten_dict(flat), report


# ---------------------------------------------------------------------------------------------
# Saving and loading converted checkpoints


def convert_file(src: str, arch: str, out: str, check_hash: bool = True, force: bool = False):
    """Reads `src`, converts it for `arch` and writes the checkpoint directory `out`.
    Returns the report: mapped [(torch key, flax path, torch shape, flax shape)], ignored
    [(key, reason)], renamed [str] and the metadata written."""
    import orbax.checkpoint as ocp

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {list(ARCHS)}")
    out = os.path.abspath(out)
    if os.path.exists(os.path.join(out, VARIABLES_DIR)) and not force:
        raise ValueError(f"{out} already holds a converted checkpoint; pass --force to overwrite")
    state, file_format = read_checkpoint(src)
    sha = check_torchvision_hash(src) if check_hash else None
    state, renamed = from_timm(state)
    variables, report = convert_state_dict(state, arch)
    os.makedirs(out, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(out, VARIABLES_DIR), variables, force=force)
    checkpointer.wait_until_finished()
    metadata = {
        "arch": arch,
        "source": os.path.basename(src),
        "source_format": file_format,
        "source_sha256": sha,
        "num_mapped": len(report["mapped"]),
        "ignored": [f"{key}: {reason}" for key, reason in report["ignored"]],
        "renamed": renamed,
    }
    with open(os.path.join(out, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=1)
    return {**report, "renamed": renamed, "metadata": metadata}


def load_pretrained(path: str, variables: dict, arch: str) -> dict:
    """`variables` (from `model.init`, any head size) with every backbone leaf replaced by the
    converted checkpoint in directory `path`; `head` stays as initialised. Leaves keep their
    dtype and sharding. Raises ValueError with what to do when the checkpoint does not fit."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    meta_file = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(meta_file):
        raise ValueError(
            f"model.pretrained={path} is not a converted checkpoint (no {METADATA_FILE}); "
            "create one with python -m jaxgan.convert --arch=ARCH --src=FILE --out=DIR"
        )
    with open(meta_file) as f:
        metadata = json.load(f)
    if metadata.get("arch") != arch:
        raise ValueError(
            f"model.pretrained={path} holds {metadata.get('arch')} weights but model.name is "
            f"{arch}; set --config.model.name={metadata.get('arch')} or convert a {arch} file"
        )
    stored = ocp.StandardCheckpointer().restore(os.path.join(path, VARIABLES_DIR))
    stored = traverse_util.flatten_dict(stored)
    flat = traverse_util.flatten_dict(dict(variables))
    wanted = {p for p in flat if p[1] != "head"}
    missing, unexpected = wanted - set(stored), set(stored) - wanted
    if missing or unexpected:
        raise ValueError(
            f"model.pretrained={path} does not fit the {arch} model: "
            f"missing {_listing('/'.join(p) for p in missing)}; "
            f"unexpected {_listing('/'.join(p) for p in unexpected)} "
            "(model.width must be 64 for pretrained weights)"
        )
    bad = [
        f"{'/'.join(p)} {stored[p].shape} vs {flat[p].shape}"
        for p in wanted
        if tuple(stored[p].shape) != tuple(flat[p].shape)
    ]
    if bad:
        raise ValueError(
            f"model.pretrained={path} does not fit the {arch} model: shape mismatch "
            f"{_listing(bad)} (model.width must be 64 for pretrained weights)"
        )
    for p in wanted:
        leaf = flat[p]
        value = jnp.asarray(stored[p], dtype=leaf.dtype)
        sharding = getattr(leaf, "sharding", None)
        flat[p] = jax.device_put(value, sharding) if sharding is not None else value
    return traverse_util.unflatten_dict(flat)
