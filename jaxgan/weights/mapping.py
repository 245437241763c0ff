"""torchvision / timm state-dict keys -> our Flax variables, per architecture.

The mapping is strict on purpose: a slightly wrong one still trains and silently loses
accuracy. Every backbone leaf of the Flax model must come from exactly one checkpoint tensor of
the right shape; every checkpoint tensor must be mapped or be one of the few ignored on purpose
(`IGNORED`): the ImageNet 1000-way head (the generator gets a fresh L-way `head`), BatchNorm's
`num_batches_tracked` counters and Inception-v3's auxiliary head. Anything else is an error that
names the keys.

Layout changes: conv kernels OIHW -> HWIO, linear weights [out, in] -> [in, out], and VGG's first
classifier weight is permuted from torch's (C, H, W) flatten order to our NHWC (H, W, C) one.
timm stores VGG's classifier as convolutions (`pre_logits.fc1` 7x7, `pre_logits.fc2` 1x1,
`head.fc`); those are renamed and reshaped to torchvision's `classifier.{0,3,6}` first.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxgan.models import GENERATORS, PRETRAINED, build_generator
from jaxgan.weights.bounds import printable

ARCHS = tuple(PRETRAINED)  # the converter's --arch choices

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
_LEAF_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {list(ARCHS)}")


def build_model(arch: str, num_labels: int = 1000, dtype=jnp.float32):
    """The Flax module that `arch`'s ImageNet weights load into."""
    check_arch(arch)
    return build_generator(PRETRAINED[arch], num_labels, dtype)


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


def backbone_shapes(arch: str) -> dict:
    """{(collection, *module path, leaf): shape} of `arch`'s variables without `head`."""
    model = build_model(arch)
    size = GENERATORS[PRETRAINED[arch]].image_size
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


def listing(keys, limit=8) -> str:
    """Up to `limit` of `keys`, each cut for a one-line message, and how many there are."""
    keys = sorted(keys)
    shown = ", ".join(printable(key, 100) for key in keys[:limit])
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
            problems.append(f"missing keys: {listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {listing(unexpected)}")
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
        raise ValueError(f"checkpoint does not match {arch}: shape mismatch {listing(mismatched)}.")
    report = {"mapped": mapped, "ignored": ignored}
    return traverse_util.unflatten_dict(flat), report
