"""Your own data: a folder of images and a labels file (docs/datasets.md, "Your own data").

    python -m jaxgan.main --config=configs/custom.py --workdir=runs/mine \
      --config.data.image_dir=photos --config.data.labels_file=photos/labels.csv

Variants pick the backbone: configs/custom.py:resnet50 (default) | :resnet18 | :resnet101 | ...
or `:cpu`, a quick run for a CPU (ResNet-18 from scratch at 96x96, batch 16, 300 BCE + 100
adversarial steps); add `,no_critic` for the baseline without the critic, with as many
generator updates (`:cpu,no_critic`, `:resnet101,no_critic`; `:no_critic` alone for ResNet-50).
The first run builds a TFDS copy of the images under data.data_dir (TFDS's default,
~/tensorflow_datasets, when unset), reporting and skipping missing or unreadable files.
"""

from jaxgan.base_config import BACKBONES, get_base_config, no_critic, parse_variant, set_backbone


def get_config(variant: str = ""):
    backbone, switches = parse_variant(
        variant, ("cpu", *BACKBONES), ("no_critic",), "configs/custom.py"
    )
    config = get_base_config()
    config.data.name = "custom"
    config.data.image_dir = ""  # folder of images; labels_file names are relative to it
    # Labels-file names must resolve inside image_dir (links and ".." followed); true lets them
    # point anywhere this process can read. Only for a labels file you wrote yourself.
    config.data.allow_outside_paths = False
    config.data.labels_file = ""  # CSV (filename + one 0/1 column per class) or JSON lines
    config.data.split_seed = 0  # draws the splits the labels file does not give
    config.data.validation_fraction = 0.1  # of images without a split, when none say validation
    config.data.test_fraction = 0.1  # of images without a split, when none say test
    config.data.keep_unlabeled = False  # keep images with no positive label (dropped by default)
    config.data.augment = "paper"
    config.data.shuffle_buffer = 2_000
    config.schedule.supervised_steps = 2_000
    config.schedule.adversarial_steps = 2_000
    config.schedule.eval_every = 500
    config.schedule.checkpoint_every = 500
    if backbone == "cpu":
        set_backbone(config, "resnet18")
        config.data.image_size = 96
        config.data.shuffle_buffer = 1_000
        config.schedule.batch_size = 16
        config.schedule.eval_batch_size = 64
        config.schedule.supervised_steps = 300
        config.schedule.adversarial_steps = 100
        # Chosen on the validation splits of two real photo sets together (docs/critic.md, "A
        # recipe for real photos at CPU scale"). From scratch, the paper's 1e-4 is far from done
        # after 300 steps on one set and 1e-3 ends behind it on the other; the decay at each phase's
        # end keeps the last checkpoint from landing wherever the last noisy step left it; and
        # alpha = 1 keeps G's loss on the supervised phase's scale at the switch.
        config.optim.generator_learning_rate = 3e-4
        config.optim.generator_decay_steps = 100
        config.method.alpha = 1.0
        config.schedule.log_every = 25
        config.schedule.eval_every = 0
        config.schedule.checkpoint_every = 100
    else:
        set_backbone(config, backbone or "resnet50")
    return no_critic(config) if "no_critic" in switches else config
