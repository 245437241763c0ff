"""The defaults every config starts from: the paper's hyper-parameters (docs/method.md).

Config files under `configs/` call `get_base_config()` and change what their dataset and
backbone need; every field can be overridden on the command line (`--config.method.alpha=5`).
"""

import ml_collections

from jaxgan.models import GENERATORS


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet101"  # a key of jaxgan.models.GENERATORS
    c.model.width = 64  # base channel count (ResNet family); the paper's backbones use 64
    c.model.dtype = "float32"  # compute dtype: "float32" or "bfloat16" (parameters stay float32)
    # Recompute each backbone block's activations in the backward pass instead of keeping them:
    # less memory for large backbones and batches, about one more forward pass of compute.
    c.model.remat = False
    # Exponential moving average of G's weights (and BatchNorm statistics), updated after every
    # generator update and used for evaluation and prediction: ema = d·ema + (1 − d)·G. 0 = off.
    c.model.ema_decay = 0.0
    c.model.pretrained = (
        ""  # converted ImageNet checkpoint (python -m jaxgan.convert); "" = random init
    )

    c.data = ml_collections.ConfigDict()
    c.data.name = "coco"  # a key of jaxgan.data.datasets.SOURCES
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir
    c.data.image_size = 224  # the model's input side
    c.data.augment = "paper"  # "paper" (five patches x five scales + flip) | "flip" | "none"
    c.data.normalization = "imagenet"  # "imagenet" | "inception" | "unit" ([0, 1])
    # Each epoch is a full permutation of the train split: the two tf.data-era fields below
    # are no longer read, kept so that configs and checkpoints that set them still load.
    c.data.shuffle_buffer = 10_000
    c.data.private_threads = 0
    c.data.num_parallel_calls = -1  # batches Grain reads at once in threads; -1 = 4
    c.data.num_workers = 0  # Grain worker processes reading batches; 0 = the training process
    c.data.device_prefetch = 2  # steps whose batches are on the devices before they run
    # Read the train split's prepared records once and keep them in memory (uint8 squares and
    # labels), at most cache_max_mib of them.
    c.data.cache_decoded = False
    c.data.cache_max_mib = 4_096

    c.method = ml_collections.ConfigDict()
    # The loss of the supervised phase, also the one α weighs in the generator loss (Eq. 2):
    # "bce" (the paper's) or "asl" (jaxgan.losses.CLASSIFICATION_LOSSES).
    c.method.classification_loss = "bce"
    # ASL (Ridnik et al., ICCV 2021), for classification_loss="asl"; that paper's values.
    c.method.asl = ml_collections.ConfigDict()
    c.method.asl.gamma_neg = 4.0  # γ−, focusing of negatives
    c.method.asl.gamma_pos = 0.0  # γ+, focusing of positives
    c.method.asl.clip = 0.05  # probability margin m: negatives with p < m cost nothing
    c.method.alpha = 10.0  # weight of the classification loss in the generator loss (Eq. 2)
    # G's loss: "paper" = −E D(ŷ, x) + α·L_cls (Eq. 2); "scaled" = the same divided by α,
    # L_cls − E D(ŷ, x)/α, which keeps the supervised phase's scale across the phase switch.
    c.method.generator_loss = "paper"
    c.method.gp_weight = 10.0  # lambda, gradient-penalty scale (Eq. 4)
    c.method.beta = 0.9  # Gumbel-sigmoid inverse temperature, no annealing
    c.method.n_critic = 3  # critic updates per generator update
    c.method.straight_through = False  # hard Gumbel samples with soft gradients
    c.method.negative_sampling = True  # mismatched (x, y') pairs; off = ablation (c)
    c.method.conditional = True  # D(y, x); off = D(y), ablation (d)
    c.method.gumbel = True  # off = feed sigmoid(s) to D, ablation (e)
    c.method.feature_extractor = (
        "snapshot"  # f_ext: "snapshot" of G after the supervised phase | "pretrained"
    )
    # With model.ema_decay > 0: take the f_ext snapshot from G's moving average, not from G.
    c.method.snapshot_ema = False
    c.method.threshold = 0.5  # a label is predicted when sigmoid(s) > threshold

    c.critic = ml_collections.ConfigDict()
    c.critic.embed_dim = 256
    c.critic.hidden_dim = 512
    c.critic.num_layers = 8
    c.critic.negative_slope = 0.2  # leaky ReLU slope (the paper does not give one)

    c.optim = ml_collections.ConfigDict()
    c.optim.generator_learning_rate = 1e-4
    c.optim.critic_learning_rate = 1e-4
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.0
    # Start G's Adam state afresh (moments and step count) when the adversarial phase starts.
    c.optim.reset_generator_moments = False
    # G's learning rate falls linearly over the last generator_decay_steps updates of each
    # phase, to generator_decay_to times itself at the phase's last update; 0 = constant.
    c.optim.generator_decay_steps = 0
    c.optim.generator_decay_to = 0.1

    # JAX's persistent compilation cache (jaxgan/runtime.py): "" turns it off.
    c.compilation_cache = ml_collections.ConfigDict()
    c.compilation_cache.dir = "~/.cache/jaxgan/xla"
    c.compilation_cache.max_gib = 4.0  # least recently used programs are evicted past this
    c.compilation_cache.min_compile_seconds = 1.0  # quicker compilations are not stored

    c.schedule = ml_collections.ConfigDict()
    c.schedule.batch_size = 32  # global batch, split over all devices
    c.schedule.eval_batch_size = 64
    c.schedule.supervised_steps = (
        20_000  # phase 1: supervised updates of G (classification loss alone)
    )
    c.schedule.adversarial_steps = (
        20_000  # phase 2: generator updates (each after n_critic critic updates)
    )
    c.schedule.log_every = 100
    c.schedule.eval_every = 5_000  # 0 = only at the end of each phase
    c.schedule.checkpoint_every = 1_000
    c.schedule.keep_checkpoints = 3
    return c


# The backbones a config variant can name: those with ImageNet weights and the input they expect.
BACKBONES = tuple(name for name, spec in GENERATORS.items() if spec.image_size is not None)


def set_backbone(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Points `config` at backbone `name` with the input size and normalisation its ImageNet
    weights expect (`jaxgan.models.GENERATORS`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone variant {name!r}; choose one of {sorted(BACKBONES)}")
    spec = GENERATORS[name]
    config.model.name = name
    config.data.image_size = spec.image_size
    config.data.normalization = spec.normalization
    return config


# Variants renamed since checkpoints and commands were first written: old name -> new name.
RENAMED_VARIANTS = {"bce": "no_critic"}


def parse_variant(
    variant: str, backbones: tuple[str, ...], switches: tuple[str, ...], config_file: str
) -> tuple[str | None, set[str]]:
    """Splits a config variant such as `cpu,no_critic` into (its backbone or None, its
    switches).

    Parts are comma-separated: at most one of `backbones`, and any of `switches`, each once.
    Raises ValueError, one line naming the file and the choices, for anything else.
    """
    parts = [part.strip() for part in variant.split(",") if part.strip()]
    chosen = [part for part in parts if part in backbones]
    for part in parts:
        if part in RENAMED_VARIANTS and part not in switches:
            problem = f"variant {part!r} is now called {RENAMED_VARIANTS[part]!r}"
        elif part not in backbones and part not in switches:
            problem = f"unknown variant {part!r}"
        elif parts.count(part) > 1:
            problem = f"variant {part!r} given twice"
        elif len(chosen) > 1:
            problem = f"variants {chosen} each choose a backbone"
        else:
            continue
        choices = f"any of {list(switches)}"
        if backbones:
            choices = (
                f"at most one of {list(backbones)}, plus {choices}, joined by commas "
                f"(e.g. {backbones[0]},{switches[0]})"
            )
        raise ValueError(f"{problem} in {config_file}:{variant}; use {choices}")
    return (chosen[0] if chosen else None), set(parts) - set(chosen)


def no_critic(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The baseline of a config (variant `no_critic`): the same number of generator updates,
    all supervised (on the classification loss alone)."""
    config.schedule.supervised_steps += config.schedule.adversarial_steps
    config.schedule.adversarial_steps = 0
    return config
