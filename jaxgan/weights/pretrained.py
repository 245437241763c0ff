"""Converted checkpoints: written once by `convert_file`, loaded into a model by
`load_pretrained`.

A converted checkpoint is a directory: `variables/` (Orbax, the backbone's `params` and
`batch_stats` without `head`) and `pretrained.json` (arch, source file, what was ignored).
The directory is outside input too: its metadata is read with a size cap and checked, and the
stored arrays are compared with the model's shapes before anything is restored, then restored
into exactly those shapes. No torch, no TensorFlow here.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxgan.models import GENERATORS, PRETRAINED_WIDTH, backbone
from jaxgan.weights.bounds import DEFAULT_LIMITS, Limits, WeightFileError, open_regular, printable
from jaxgan.weights.mapping import check_arch, convert_state_dict, from_timm, listing
from jaxgan.weights.source import check_torchvision_hash, read_weight_file

METADATA_FILE = "pretrained.json"
VARIABLES_DIR = "variables"
_MAX_METADATA_BYTES = 1 << 20  # pretrained.json lists the ignored keys: ~10 KB for ResNet-152
_CONVERT_AGAIN = "convert the weights again with python -m jaxgan.convert"


def convert_file(
    src,
    arch: str,
    out,
    check_hash: bool = True,
    force: bool = False,
    limits: Limits = DEFAULT_LIMITS,
):
    """Reads `src`, converts it for `arch` and writes the checkpoint directory `out`.
    Returns the report: mapped [(torch key, flax path, torch shape, flax shape)], ignored
    [(key, reason)], renamed [str] and the metadata written."""
    import orbax.checkpoint as ocp

    check_arch(arch)
    out = os.path.abspath(out)
    if os.path.exists(os.path.join(out, VARIABLES_DIR)) and not force:
        raise ValueError(f"{out} already holds a converted checkpoint; pass --force to overwrite")
    state, file_format = read_weight_file(src, limits)
    sha = check_torchvision_hash(src) if check_hash else None
    state, renamed = from_timm(state)
    variables, report = convert_state_dict(state, arch)
    os.makedirs(out, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(out, VARIABLES_DIR), variables, force=force)
    checkpointer.wait_until_finished()
    metadata = {
        "arch": arch,
        "source": os.path.basename(os.fspath(src)),
        "source_format": file_format,
        "source_sha256": sha,
        "num_mapped": len(report["mapped"]),
        "ignored": [f"{key}: {reason}" for key, reason in report["ignored"]],
        "renamed": renamed,
    }
    with open(os.path.join(out, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=1)
    return {**report, "renamed": renamed, "metadata": metadata}


def _read_metadata(path: str) -> dict:
    meta_file = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(meta_file):
        raise ValueError(
            f"model.pretrained={path} is not a converted checkpoint (no {METADATA_FILE}); "
            "create one with python -m jaxgan.convert --arch=ARCH --src=FILE --out=DIR"
        )
    with open_regular(meta_file) as f:
        raw = f.read(_MAX_METADATA_BYTES + 1)
    try:
        if len(raw) > _MAX_METADATA_BYTES:
            raise ValueError(f"larger than {_MAX_METADATA_BYTES:,} bytes")
        metadata = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise WeightFileError(
            meta_file,
            f"not a valid metadata file ({printable(str(error), 80)})",
            advice=_CONVERT_AGAIN,
        ) from None
    if type(metadata) is not dict or type(metadata.get("arch")) is not str:
        raise WeightFileError(meta_file, "it does not name an arch", advice=_CONVERT_AGAIN)
    return metadata


def check_pretrained_arch(path, name: str) -> None:
    """The converted checkpoint in directory `path` must hold weights of backbone `name`
    (read from its small metadata file only, so the config check can call it at the door)."""
    path = os.path.abspath(path)
    expected_arch = backbone(name).pretrained_arch
    if expected_arch is None:
        raise ValueError(
            f"model.name={name} has no ImageNet weights; unset model.pretrained or choose one of "
            f"{sorted(n for n, spec in GENERATORS.items() if spec.pretrained_arch)}"
        )
    arch = _read_metadata(path)["arch"]
    if arch != expected_arch:
        holders = [n for n, spec in GENERATORS.items() if spec.pretrained_arch == arch]
        fix = f"set --config.model.name={holders[0]} or " if holders else ""
        raise ValueError(
            f"model.pretrained={path} holds {printable(arch, 40)} weights but model.name is "
            f"{name}; {fix}convert a {expected_arch} file"
        )


def load_pretrained(path, variables: dict, name: str) -> dict:
    """`variables` (from `model.init` of generator `name`, any head size) with every backbone
    leaf replaced by the converted checkpoint in directory `path`; `head` stays as initialised.
    Leaves keep their dtype and sharding. Raises ValueError with what to do when the checkpoint
    does not fit or is damaged."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    check_pretrained_arch(path, name)
    flat = traverse_util.flatten_dict(dict(variables))
    wanted = {p: flat[p] for p in flat if p[1] != "head"}
    width_hint = (
        f" (model.width must be {PRETRAINED_WIDTH} for pretrained weights)"
        if backbone(name).width_configurable
        else ""
    )
    checkpointer = ocp.StandardCheckpointer()
    directory = os.path.join(path, VARIABLES_DIR)
    try:  # Orbax reports a damaged checkpoint in many ways; each is one line here
        stored = checkpointer.metadata(directory).item_metadata.tree
        stored = {p: tuple(s.shape) for p, s in traverse_util.flatten_dict(stored).items()}
    except Exception as error:  # noqa: BLE001 (the boundary of a library reading outside files)
        raise WeightFileError(
            directory, f"cannot read it ({_first_line(error)})", advice=_CONVERT_AGAIN
        ) from None
    missing, unexpected = set(wanted) - set(stored), set(stored) - set(wanted)
    if missing or unexpected:
        raise ValueError(
            f"model.pretrained={path} does not fit the {name} model: "
            f"missing {listing('/'.join(p) for p in missing)}; "
            f"unexpected {listing('/'.join(p) for p in unexpected)}{width_hint}"
        )
    bad = [
        f"{'/'.join(p)} {stored[p]} vs {tuple(leaf.shape)}"
        for p, leaf in wanted.items()
        if stored[p] != tuple(leaf.shape)
    ]
    if bad:
        raise ValueError(
            f"model.pretrained={path} does not fit the {name} model: shape mismatch "
            f"{listing(bad)}{width_hint}"
        )
    # Restored into the model's own shapes: a checkpoint cannot make us allocate more.
    target = {p: jax.ShapeDtypeStruct(tuple(leaf.shape), np.float32) for p, leaf in wanted.items()}
    try:
        restored = checkpointer.restore(directory, traverse_util.unflatten_dict(target))
        restored = traverse_util.flatten_dict(restored)
    except Exception as error:  # noqa: BLE001 (as above)
        raise WeightFileError(
            directory, f"cannot restore it ({_first_line(error)})", advice=_CONVERT_AGAIN
        ) from None
    for p, leaf in wanted.items():
        value = jnp.asarray(restored[p], dtype=leaf.dtype)
        sharding = getattr(leaf, "sharding", None)
        flat[p] = jax.device_put(value, sharding) if sharding is not None else value
    return traverse_util.unflatten_dict(flat)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return printable(lines[0], 160)
