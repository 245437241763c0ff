"""digit_scenes: multi-label 32x32 scenes of real handwritten digits with label dependency.

Built offline and deterministically (seed `SEED`) from the 1,797 real 8x8 scans of
scikit-learn's `load_digits`; no download. Ten labels, the digits "0".."9"; each image shows
2-4 distinct digits, each digit one object, so label i means "digit i is somewhere in it".

Splits. Each class's scans are permuted with the seed and cut 60/20/20 into train (1,078
scans), validation (360) and test (359) pools; a split's images use only its own pool, so no
scan is shared between splits. Default sizes: 8,000 / 2,000 / 2,000 images (builder config
"small": 400 / 200 / 200, a prefix of each default split). Builder configs "shuffled",
"half" and "strong" (each also "_small") change only how labels depend on each other
(`DEPENDENCIES`, below).

Generating process, per image (one numpy Generator per split, examples drawn in order):
1. Scene, uniformly among 7. Six structured scenes, like COCO's kitchen or street, each a pair
   of context digits (always present, rendered easy) and a companion digit:
       scene0: 2, 5 -> 7    scene1: 3, 8 -> 1    scene2: 0, 6 -> 9
       scene3: 4, 7 -> 2    scene4: 1, 9 -> 6    scene5: 5, 0 -> 4
   The companion is present with probability 0.7 and, when present, rendered hard with
   probability 0.8 (small, faint or occluded, one third each). With probability 0.35 one
   distractor digit from outside the scene is added, easy. The seventh scene, "clutter",
   has 2, 3 or 4 distinct uniformly drawn digits, all easy, with no structure. Every digit
   is context somewhere, so every class has many easy instances; only companions are ever
   hard, and a hard companion always comes with both its context digits.
2. Layout: a 2x2 grid of 16x16 cells, one object per cell (cells in random order), the
   digit at a random offset inside its cell, so objects never overlap.
3. Rendering on a dark background of random colour (each channel U(0, 0.3)). A digit is a
   scan of its class drawn from the split's pool, resized with bilinear interpolation
   (antialiased when shrinking), alpha-blended in a random light colour:
       easy:     9-13 px, contrast (alpha scale) U(0.45, 1.0)
       small:    5-6 px, contrast as easy
       faint:    9-13 px, contrast U(0.08, 0.16)
       occluded: as easy, then 55-70% of its box, from a random side, covered by a flat
                 shadow patch (the background colour times U(0.3, 0.6))
   With probability 0.3 an unlabeled shadow patch of 5-11 px also fills one empty cell, so
   a patch alone does not signal a hidden digit. Finally Gaussian noise (sigma 0.07) is
   added to every pixel, the image is clipped to [0, 1] and stored as uint8 RGB.

Label statistics of the train split, from `label_statistics` (validation and test agree to
about +-0.03). ctx = both context digits of the scene present, comp = its companion present:

    mean labels per image: 3.050
    hard share of present labels: 0.157
    label frequency: 0: 0.357  1: 0.310  2: 0.319  3: 0.233  4: 0.311
                     5: 0.361  6: 0.309  7: 0.317  8: 0.235  9: 0.298

    ctx   comp  P(comp|ctx)  P(comp|not ctx)  P(ctx|comp)  P(hard|comp,ctx)  P(ctx|hard comp)
    2, 5  7     0.658        0.247            0.354        0.719             1.000
    3, 8  1     0.662        0.242            0.349        0.785             1.000
    0, 6  9     0.640        0.232            0.350        0.742             1.000
    4, 7  2     0.654        0.256            0.326        0.746             1.000
    1, 9  6     0.663        0.246            0.323        0.749             1.000
    5, 0  4     0.613        0.250            0.332        0.801             1.000

So the companion is 2.4-2.8x more likely next to its context than elsewhere, and three
quarters of the time it is hard to see there; its visible, easy instances come mostly from
other scenes, where it is context or a distractor.

Features: image uint8 [32, 32, 3]; labels uint8 [10] (multi-hot); hard uint8 [10] (which
present labels were rendered hard); scene (ClassLabel, 7); source_ids int32 [4] (scan indices
into `load_digits`, one per object in `objects` order, padded with -1); objects (Sequence of
label, rendering in ("easy", "small", "faint", "occluded"), bbox).
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

IMAGE_SIZE = 32
CELL = 16  # the canvas is a 2x2 grid of 16x16 cells, one object per cell
MAX_OBJECTS = 4
NUM_LABELS = 10
CLASS_NAMES = tuple(str(d) for d in range(NUM_LABELS))
SEED = 1797

# Structured scenes: (context digits, always present and easy; companion digit).
SCENES = (
    ((2, 5), 7),
    ((3, 8), 1),
    ((0, 6), 9),
    ((4, 7), 2),
    ((1, 9), 6),
    ((5, 0), 4),
)
SCENE_NAMES = tuple(f"scene{i}" for i in range(len(SCENES))) + ("clutter",)
COMPANION_PROB = 0.7  # P(companion present | its scene)
HARD_PROB = 0.8  # P(companion rendered hard | present)
DISTRACTOR_PROB = 0.35  # P(one easy digit from outside the scene is added)
CLUTTER_SIZES = (2, 3, 4)  # clutter scenes: this many distinct random easy digits
PATCH_PROB = 0.3  # P(an unlabeled occluder-like patch fills an empty cell)

RENDERINGS = ("easy", "small", "faint", "occluded")
EASY_SIZES = (9, 10, 11, 12, 13)
SMALL_SIZES = (5, 6)
EASY_CONTRAST = (0.45, 1.0)
FAINT_CONTRAST = (0.08, 0.16)
OCCLUDED_FRACTION = (0.55, 0.7)  # share of the digit's box hidden, from one side
BACKGROUND_NOISE = 0.07

SPLIT_NAMES = ("train", "validation", "test")
SCAN_FRACTIONS = (0.6, 0.2, 0.2)  # of each class's scans, per split
SPLIT_SIZES = {"train": 8000, "validation": 2000, "test": 2000}
SMALL_SPLIT_SIZES = {"train": 400, "validation": 200, "test": 200}

# How strongly labels depend on each other (builder configs, `rewire`): the scenes' objects are
# drawn as above, then moved between images of the split before any image is rendered.
# An object moves with its rendering, so every level has the same count of each class and of
# each (class, rendering): the same label frequencies and difficulty mix, other label sets.
#   shuffled:    objects swapped at random between all images (each keeps its object count):
#                label sets as independent as images of two to four distinct digits allow
#   half:        the same among a random half of the images; the other half keep their scene
#   scenes:      the process above, unchanged (builder configs "default" and "small")
#   strong:      companions gathered to their context: each image with both context digits of
#                a scene but not its companion takes one from an image that has it without
#                that context (and needs it for no other scene's context)
DEPENDENCIES = ("shuffled", "half", "scenes", "strong")
SWAP_SWEEPS = 20  # random swaps proposed per object, for shuffled and half


def load_scans():
    """The 1,797 8x8 scans of scikit-learn's digits, as float32 [N, 8, 8] in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def scan_pools(targets: np.ndarray, seed: int = SEED) -> dict[str, list[np.ndarray]]:
    """Split -> per-class arrays of scan indices: each class's scans permuted, cut 60/20/20."""
    rng = np.random.default_rng([seed, 0])
    pools = {name: [] for name in SPLIT_NAMES}
    for digit in range(NUM_LABELS):
        scans = rng.permutation(np.flatnonzero(targets == digit))
        cuts = np.round(np.cumsum(SCAN_FRACTIONS)[:-1] * len(scans)).astype(int)
        for name, part in zip(SPLIT_NAMES, np.split(scans, cuts), strict=True):
            pools[name].append(np.sort(part))
    return pools


def _glyph(scan: np.ndarray, size: int) -> np.ndarray:
    """8x8 scan in [0, 1] -> size x size, bilinear (antialiased when shrinking)."""
    image = Image.fromarray(scan, mode="F").resize((size, size), Image.BILINEAR)
    return np.clip(np.asarray(image), 0.0, 1.0)


def _sample_objects(rng: np.random.Generator):
    """Draws a scene and its objects: (scene index, [(digit, rendering index), ...])."""
    scene = int(rng.integers(len(SCENE_NAMES)))
    if scene == len(SCENES):  # clutter
        count = int(rng.choice(CLUTTER_SIZES))
        digits = rng.choice(NUM_LABELS, size=count, replace=False)
        return scene, [(int(d), 0) for d in digits]
    context, companion = SCENES[scene]
    objects = [(d, 0) for d in context]
    if rng.random() < COMPANION_PROB:
        rendering = int(rng.integers(1, len(RENDERINGS))) if rng.random() < HARD_PROB else 0
        objects.append((companion, rendering))
    if rng.random() < DISTRACTOR_PROB:
        outside = [d for d in range(NUM_LABELS) if d not in context and d != companion]
        objects.append((int(rng.choice(outside)), 0))
    return scene, objects


def generate_split(
    split: str, num_examples: int, seed: int = SEED, dependency: str = "scenes"
) -> dict[str, np.ndarray]:
    """Generates `num_examples` scenes of `split` from that split's scan pool only.

    With `dependency="scenes"` examples are drawn one after another from one seeded generator,
    so a smaller `num_examples` gives a prefix of a larger one. Another level of `DEPENDENCIES`
    draws those scenes' objects, rewires them across the whole split (`rewire`) and renders the
    images from the rewired objects (no longer a prefix). Returns numpy arrays:
    image uint8 [N, S, S, 3]; labels, hard uint8 [N, L]; scene int64 [N] (the scene each
    image's objects were drawn for); and per object slot (padded with -1 to MAX_OBJECTS)
    object_label, source_id, rendering int64 [N, 4] and bbox int64 [N, 4, 4] (ymin, xmin,
    ymax, xmax; pixels, exclusive).
    """
    if dependency not in DEPENDENCIES:
        raise ValueError(f"unknown dependency {dependency!r}; choose one of {DEPENDENCIES}")
    drawn = _render(split, num_examples, seed)
    if dependency == "scenes":
        return drawn
    objects = [
        [(int(d), int(r)) for d, r in zip(labels, renderings, strict=True) if d >= 0]
        for labels, renderings in zip(drawn["object_label"], drawn["rendering"], strict=True)
    ]
    stream = [seed, 1 + SPLIT_NAMES.index(split), 1 + DEPENDENCIES.index(dependency)]
    rewired = rewire(objects, dependency, np.random.default_rng(stream))
    return _render(split, num_examples, seed, drawn["scene"], rewired, stream)


def rewire(objects: list, dependency: str, rng: np.random.Generator) -> list:
    """The objects [(digit, rendering), ...] of each image, moved between images as the
    `dependency` level says (`DEPENDENCIES`); a new list, the input untouched. Every level
    keeps each digit's and each (digit, rendering)'s count over the split."""
    objects = [list(image) for image in objects]
    if dependency == "shuffled":
        _swap_at_random(objects, range(len(objects)), rng)
    elif dependency == "half":
        _swap_at_random(objects, rng.permutation(len(objects))[: len(objects) // 2].tolist(), rng)
    elif dependency == "strong":
        _gather_companions(objects, rng)
    elif dependency != "scenes":
        raise ValueError(f"unknown dependency {dependency!r}; choose one of {DEPENDENCIES}")
    return objects


def _swap_at_random(objects: list, images, rng: np.random.Generator) -> None:
    """Swaps objects between random pairs of `images` (in place), `SWAP_SWEEPS` proposals per
    object; a swap that would put a digit twice in one image is skipped. Each image keeps its
    number of objects and each object its rendering (swap randomisation with fixed margins)."""
    slots = [(n, s) for n in images for s in range(len(objects[n]))]
    if len(slots) < 2:
        return
    digits = {n: {d for d, _ in objects[n]} for n in images}
    for i, j in rng.integers(len(slots), size=(SWAP_SWEEPS * len(slots), 2)).tolist():
        (a, s), (b, t) = slots[i], slots[j]
        da, db = objects[a][s][0], objects[b][t][0]
        if da in digits[b] or db in digits[a]:  # also a == b, and da == db
            continue
        objects[a][s], objects[b][t] = objects[b][t], objects[a][s]
        digits[a].remove(da)
        digits[a].add(db)
        digits[b].remove(db)
        digits[b].add(da)


def _gather_companions(objects: list, rng: np.random.Generator) -> None:
    """For each scene in turn (in place): every image with both its context digits, without its
    companion and with a free cell takes the companion from a random image that has it
    without that context, keeps at least two objects after giving it, and does not need it
    for another scene's context present there."""

    def digits(n):
        return {d for d, _ in objects[n]}

    for context, companion in SCENES:
        needing = [
            n
            for n in range(len(objects))
            if set(context) <= digits(n)
            and companion not in digits(n)
            and len(objects[n]) < MAX_OBJECTS
        ]
        giving = [
            n
            for n in range(len(objects))
            if companion in digits(n)
            and not set(context) <= digits(n)
            and len(objects[n]) > 2
            and not any(companion in c and set(c) <= digits(n) for c, _ in SCENES)
        ]
        needing = [needing[k] for k in rng.permutation(len(needing))]
        giving = [giving[k] for k in rng.permutation(len(giving))]
        for taker, giver in zip(needing, giving, strict=False):
            slot = next(s for s, (d, _) in enumerate(objects[giver]) if d == companion)
            objects[taker].append(objects[giver].pop(slot))


def _render(split, num_examples, seed, scenes=None, objects=None, stream=None):
    """Draws (or, with `objects`, takes) each image's objects and renders it: see
    `generate_split`. `scenes` and `objects` come together, with their own random `stream`."""
    scans, targets = load_scans()
    pools = scan_pools(targets, seed)[split]
    rng = np.random.default_rng(stream or [seed, 1 + SPLIT_NAMES.index(split)])
    glyph_cache = {}
    out = {
        "image": np.zeros((num_examples, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
        "labels": np.zeros((num_examples, NUM_LABELS), np.uint8),
        "hard": np.zeros((num_examples, NUM_LABELS), np.uint8),
        "scene": np.zeros((num_examples,), np.int64),
        "object_label": np.full((num_examples, MAX_OBJECTS), -1, np.int64),
        "source_id": np.full((num_examples, MAX_OBJECTS), -1, np.int64),
        "rendering": np.full((num_examples, MAX_OBJECTS), -1, np.int64),
        "bbox": np.full((num_examples, MAX_OBJECTS, 4), -1, np.int64),
    }
    for n in range(num_examples):
        if objects is None:
            scene, image_objects = _sample_objects(rng)
        else:
            scene, image_objects = int(scenes[n]), objects[n]
        background = rng.uniform(0.0, 0.3, size=3).astype(np.float32)
        canvas = np.broadcast_to(background, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
        cells = rng.permutation(MAX_OBJECTS)
        for slot, (digit, rendering) in enumerate(image_objects):
            scan = int(rng.choice(pools[digit]))
            size = int(rng.choice(SMALL_SIZES if RENDERINGS[rendering] == "small" else EASY_SIZES))
            lo, hi = FAINT_CONTRAST if RENDERINGS[rendering] == "faint" else EASY_CONTRAST
            contrast = rng.uniform(lo, hi)
            colour = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
            colour[rng.integers(3)] = 1.0
            top = CELL * (cells[slot] // 2) + int(rng.integers(CELL - size + 1))
            left = CELL * (cells[slot] % 2) + int(rng.integers(CELL - size + 1))
            key = (scan, size)
            if key not in glyph_cache:
                glyph_cache[key] = _glyph(scans[scan], size)
            alpha = (contrast * glyph_cache[key])[..., None]
            box = canvas[top : top + size, left : left + size]
            box[:] = box * (1.0 - alpha) + colour * alpha
            if RENDERINGS[rendering] == "occluded":
                hidden = int(np.ceil(rng.uniform(*OCCLUDED_FRACTION) * size))
                side = int(rng.integers(4))  # top, bottom, left, right
                shade = (background * rng.uniform(0.3, 0.6)).astype(np.float32)
                if side == 0:
                    box[:hidden] = shade
                elif side == 1:
                    box[size - hidden :] = shade
                elif side == 2:
                    box[:, :hidden] = shade
                else:
                    box[:, size - hidden :] = shade
            out["labels"][n, digit] = 1
            out["hard"][n, digit] = rendering > 0
            out["object_label"][n, slot] = digit
            out["source_id"][n, slot] = scan
            out["rendering"][n, slot] = rendering
            out["bbox"][n, slot] = (top, left, top + size, left + size)
        if len(image_objects) < MAX_OBJECTS and rng.random() < PATCH_PROB:
            cell = cells[len(image_objects)]
            height, width = rng.integers(5, 12, size=2)
            top = CELL * (cell // 2) + int(rng.integers(CELL - height + 1))
            left = CELL * (cell % 2) + int(rng.integers(CELL - width + 1))
            shade = (background * rng.uniform(0.3, 0.6)).astype(np.float32)
            canvas[top : top + height, left : left + width] = shade
        noise = rng.normal(0.0, BACKGROUND_NOISE, size=(IMAGE_SIZE, IMAGE_SIZE, 1))
        canvas = canvas + noise.astype(np.float32)
        out["image"][n] = np.round(np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)
        out["scene"][n] = scene
    return out


def label_statistics(labels: np.ndarray, hard: np.ndarray) -> dict:
    """Co-occurrence statistics of multi-hot `labels` [N, L] (and `hard` [N, L]).

    For each structured scene, with `ctx` = both its context digits present:
    P(companion | ctx), P(companion | not ctx), P(ctx | companion) and P(hard | companion, ctx).
    """
    labels, hard = labels.astype(bool), hard.astype(bool)
    stats = {
        "mean_labels": float(labels.sum(1).mean()),
        "label_frequency": labels.mean(0),
        "hard_fraction": float(hard.sum() / labels.sum()),
        "scenes": [],
    }
    for context, companion in SCENES:
        ctx = labels[:, context[0]] & labels[:, context[1]]
        comp = labels[:, companion]
        stats["scenes"].append(
            {
                "context": context,
                "companion": companion,
                "p_comp_given_ctx": float(comp[ctx].mean()),
                "p_comp_given_not_ctx": float(comp[~ctx].mean()),
                "p_ctx_given_comp": float(ctx[comp].mean()),
                "p_hard_given_comp_ctx": float(hard[ctx & comp, companion].mean()),
                "p_ctx_given_hard_comp": float(ctx[hard[:, companion]].mean()),
            }
        )
    return stats


def dependency_summary(labels: np.ndarray) -> dict:
    """How strongly the multi-hot `labels` [N, L] depend on each other, in a few numbers: over
    the six scenes, the mean P(companion | both context digits), P(companion | not both) and
    P(companion); and over all ordered pairs i != j, the mean |P(j | i) - P(j)|."""
    labels = labels.astype(bool)
    by_scene = {"given_ctx": [], "given_not_ctx": [], "marginal": []}
    for context, companion in SCENES:
        ctx = labels[:, context[0]] & labels[:, context[1]]
        by_scene["given_ctx"].append(labels[ctx, companion].mean())
        by_scene["given_not_ctx"].append(labels[~ctx, companion].mean())
        by_scene["marginal"].append(labels[:, companion].mean())
    present = labels.astype(np.float64)
    counts = present.sum(0)
    conditional = (present.T @ present) / np.maximum(counts[:, None], 1)
    off_diagonal = ~np.eye(labels.shape[1], dtype=bool)
    gap = np.abs(conditional - present.mean(0)[None, :])[off_diagonal & (counts[:, None] > 0)]
    return {
        "p_comp_given_ctx": float(np.mean(by_scene["given_ctx"])),
        "p_comp_given_not_ctx": float(np.mean(by_scene["given_not_ctx"])),
        "p_comp": float(np.mean(by_scene["marginal"])),
        "pair_dependence": float(gap.mean()),
    }


def format_statistics(stats: dict) -> str:
    """The statistics as the table in this module's docstring."""
    freq = [f"{d}: {f:.3f}" for d, f in enumerate(stats["label_frequency"])]
    half = (len(freq) + 1) // 2
    lines = [
        f"mean labels per image: {stats['mean_labels']:.3f}",
        f"hard share of present labels: {stats['hard_fraction']:.3f}",
        "label frequency: " + "  ".join(freq[:half]),
        "                 " + "  ".join(freq[half:]),
        "",
        "ctx   comp  P(comp|ctx)  P(comp|not ctx)  P(ctx|comp)  P(hard|comp,ctx)  P(ctx|hard comp)",
    ]
    for s in stats["scenes"]:
        values = (
            s["p_comp_given_ctx"],
            s["p_comp_given_not_ctx"],
            s["p_ctx_given_comp"],
            s["p_hard_given_comp_ctx"],
            s["p_ctx_given_hard_comp"],
        )
        row = f"{s['context'][0]}, {s['context'][1]}  {s['companion']}     " + "  ".join(
            f"{v:<{w}.3f}" for v, w in zip(values, (11, 15, 11, 16, 16), strict=True)
        )
        lines.append(row.rstrip())
    return "\n".join(lines)


@dataclasses.dataclass
class DigitScenesConfig(tfds.core.BuilderConfig):
    """Split sizes and the labels' dependency level (`DEPENDENCIES`). The "scenes" configs run
    one generator (a smaller one is a prefix); another level rewires each split as a whole."""

    train: int = SPLIT_SIZES["train"]
    validation: int = SPLIT_SIZES["validation"]
    test: int = SPLIT_SIZES["test"]
    dependency: str = "scenes"


def builder_config_name(dependency: str, small: bool = False) -> str:
    """The builder config of a dependency level: "default" / "small" for "scenes", else the
    level's name (with "_small" for 400 / 200 / 200 images)."""
    if dependency not in DEPENDENCIES:
        raise ValueError(f"unknown dependency {dependency!r}; choose one of {DEPENDENCIES}")
    if dependency == "scenes":
        return "small" if small else "default"
    return f"{dependency}_small" if small else dependency


def _builder_configs() -> list[DigitScenesConfig]:
    configs = []
    for dependency in DEPENDENCIES:
        for small in (False, True):
            sizes = SMALL_SPLIT_SIZES if small else SPLIT_SIZES
            what = "A prefix of each default split" if dependency == "scenes" else "Labels"
            if dependency != "scenes":
                what += f" rewired to dependency level {dependency!r}"
            configs.append(
                DigitScenesConfig(
                    name=builder_config_name(dependency, small),
                    description=f"{what}: {sizes['train']:,} / {sizes['validation']:,} / "
                    f"{sizes['test']:,} images" + (", for tests." if small else "."),
                    dependency=dependency,
                    **sizes,
                )
            )
    return configs


class Builder(tfds.core.GeneratorBasedBuilder):
    """digit_scenes: generated offline from scikit-learn's digits; no download."""

    name = "digit_scenes"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: 10 labels, 6 scenes + clutter, 8,000/2,000/2,000 images.",
    }
    BUILDER_CONFIGS = _builder_configs()
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                    "labels": tfds.features.Tensor(shape=(NUM_LABELS,), dtype=np.uint8),
                    "hard": tfds.features.Tensor(shape=(NUM_LABELS,), dtype=np.uint8),
                    "scene": tfds.features.ClassLabel(names=SCENE_NAMES),
                    "source_ids": tfds.features.Tensor(shape=(MAX_OBJECTS,), dtype=np.int32),
                    "objects": tfds.features.Sequence(
                        {
                            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                            "rendering": tfds.features.ClassLabel(names=RENDERINGS),
                            "bbox": tfds.features.BBoxFeature(),
                        }
                    ),
                }
            ),
            supervised_keys=("image", "labels"),
            homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the scans ship with scikit-learn
        return {
            name: self._generate_examples(name, getattr(self.builder_config, name))
            for name in SPLIT_NAMES
        }

    def _generate_examples(self, split: str, num_examples: int):
        data = generate_split(split, num_examples, dependency=self.builder_config.dependency)
        for n in range(num_examples):
            count = int((data["object_label"][n] >= 0).sum())
            yield (
                n,
                {
                    "image": data["image"][n],
                    "labels": data["labels"][n],
                    "hard": data["hard"][n],
                    "scene": int(data["scene"][n]),
                    "source_ids": data["source_id"][n].astype(np.int32),
                    "objects": {
                        "label": data["object_label"][n, :count],
                        "rendering": data["rendering"][n, :count],
                        "bbox": (data["bbox"][n, :count] / IMAGE_SIZE).astype(np.float32),
                    },
                },
            )
