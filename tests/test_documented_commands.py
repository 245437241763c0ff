"""Every command the README and docs/ show runs, in a tiny form.

`COMMANDS` maps each fenced shell command of README.md and docs/*.md (continuation lines
joined, comments dropped, whitespace collapsed) to how it runs here: the command as written
with tiny data and steps appended as overrides (`Same`), a tiny stand-in written out in full
where the command needs what a test cannot have (`Run`: a download, ImageNet weights), the
test that runs it already (`Covered`), or why it runs elsewhere (`Elsewhere`). A fenced command
missing from `COMMANDS`, or an entry no document shows any more, fails
`test_every_documented_command_is_listed`. The test classes run the commands in the order a
user would, in a folder of their own that holds the repository's configs and scripts and
stands in for the user's home (so `$HOME/tensorflow_datasets` and TFDS's default folder are
the test's).
"""

import dataclasses
import glob
import json
import os
import re
import socket
import subprocess

import numpy as np
import pytest
from tiny_run import ROOT, tiny_flags

DOCUMENTS = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(f"{ROOT}/docs/*.md"))]
PROGRAMS = ("python ", "python3", "gcloud ")


@dataclasses.dataclass(frozen=True)
class Same:
    """The documented command itself, with `extra` arguments appended."""

    extra: str = ""
    edit: tuple = ()  # (old, new) text replacements applied first


@dataclasses.dataclass(frozen=True)
class Run:
    """A tiny stand-in, written out in full; `why` says what it stands in for."""

    command: str
    why: str


@dataclasses.dataclass(frozen=True)
class Covered:
    """Run, in this tiny form, by another test (`test`: file::function)."""

    test: str


@dataclasses.dataclass(frozen=True)
class Elsewhere:
    """Needs what one CPU machine has not; `why` says what, and what here checks its part."""

    why: str


def documented_commands() -> dict[str, str]:
    """{command, whitespace collapsed: the command as written} from the ```bash blocks."""
    found = {}
    for document in DOCUMENTS:
        with open(os.path.join(ROOT, document)) as f:
            text = f.read()
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
            lines = block.replace("\\\n", " ").splitlines()
            i = 0
            while i < len(lines):
                line = lines[i]
                i += 1
                while line.count('"') % 2 and i < len(lines):  # python -c "...", over lines
                    line += "\n" + lines[i]
                    i += 1
                line = re.sub(r"\s+#\s.*$", "", line)
                if line.strip().startswith(PROGRAMS):
                    found[" ".join(line.split())] = line.strip()
    return found


# Tiny overrides: the embedded config's small build (as tests/tiny_run.py), two steps of each
# phase, logged and saved at every step.
TINY = " ".join(
    tiny_flags(
        schedule__supervised_steps=2,
        schedule__adversarial_steps=2,
        schedule__log_every=1,
        schedule__checkpoint_every=1,
    )
)
# The same for a config of another dataset: its own data at 16 px; the paper's backbones
# stand in as the smallest ResNet, at width 4.
TINY_OTHER = " ".join(f for f in TINY.split() if "builder_config" not in f)
TINY_OTHER += " --config.model.name=resnet_small"
# Backbones that start from ImageNet weights stand in at their smallest with weights:
# ResNet-18, converted from a random torchvision file (TestDatasets), at width 64 as its
# weights have, 16 px, one supervised step (the adversarial phase runs in the other tests).
PRETRAINED = (
    f"{TINY_OTHER} --config.model.name=resnet18 --config.model.width=64 "
    "--config.model.pretrained=weights/resnet18 --config.schedule.batch_size=8 "
    "--config.schedule.eval_batch_size=32 --config.schedule.supervised_steps=1 "
    "--config.schedule.adversarial_steps=0"
)
PHOTOS = "--config.data.image_dir=photos --config.data.labels_file=photos/labels.csv"
# The two real photo sets of docs/critic.md and docs/results.md, where their instructions put them.
UCMERCED = (
    "--config.data.image_dir=photos/UCMerced_LandUse/Images "
    "--config.data.labels_file=photos/ucmerced17.csv"
)
MIML = (
    "--config.data.image_dir=photos/Multi-Label/original "
    "--config.data.labels_file=photos/Multi-Label/data.csv"
)
ONE_SEED = ("--seeds=0,1,2", "--seeds=0")
# A MIML command is the UC Merced one on another folder of the same kind (images and a CSV):
# its tiny form is the UC Merced one's, which TestResults runs once for both.
MIML_AS_UCMERCED = (
    ("photos/Multi-Label/original", "photos/UCMerced_LandUse/Images"),
    ("photos/Multi-Label/data.csv", "photos/ucmerced17.csv"),
    ("runs/photos_miml", "runs/photos_ucm"),
    ("_miml", "_ucmerced"),
)
PHOTO_SETS = [("ucm", "ucmerced", UCMERCED, ()), ("miml", "miml", MIML, MIML_AS_UCMERCED)]
BENCHMARKS = "tests/test_benchmarks.py::"
# COCO-shaped records where configs/coco.py reads them, at the tiny size (no download).
GENERATED_COCO = (
    "python experiments/accelerator_check.py --prepare --tiny --images=64 --data_dir={data}"
)
STEPS_BENCHMARK = Covered(BENCHMARKS + "test_steps")
INPUT_CPU = Covered(BENCHMARKS + "test_input_cpu")
INPUT_STALL = Covered(BENCHMARKS + "test_input_stall")
DEPENDENCY_STUDY = Covered("tests/test_dependency_study.py::test_the_study_runs_end_to_end")
PHASE_SWITCH = Covered("tests/test_phase_switch.py::test_the_variants_share_the_supervised_phase")

COMMANDS = {
    # README: the quick start, the developer tier, the four commands.
    "python3.11 -m venv .venv && . .venv/bin/activate && pip install -e . && python -m "
    "jaxgan.main --config=configs/digit_scenes.py --workdir=runs/digit_scenes": Run(
        f"python -m jaxgan.main --config=configs/digit_scenes.py --workdir=runs/digit_scenes "
        f"{TINY}",
        "the install is CI's own (.ci/run installs into a fresh virtual environment)",
    ),
    'python3.11 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && ruff '
    "check . && ruff format --check . && python -m pytest -n 2 --dist loadscope": Elsewhere(
        "the whole suite: .ci/run runs exactly this command"
    ),
    'python -m pytest -n 2 --dist loadscope -m "not slow"': Elsewhere(
        "a part of the suite that .ci/run runs whole"
    ),
    "python -m jaxgan.main --config=configs/digit_scenes.py --workdir=runs/digit_scenes": Same(
        TINY
    ),
    "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval --checkpoint_step=best": Same(),
    "python -m jaxgan.main --mode=predict --workdir=runs/digit_scenes --images=scenes/": Same(),
    "python -m jaxgan.diagnose --workdir=runs/digit_scenes": Same(),
    # docs/usage.md
    "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval": Same(),
    "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval --checkpoint_step=1400": Same(
        edit=(("--checkpoint_step=1400", "--checkpoint_step=3"),)  # the tiny run has 4 steps
    ),
    "python -m jaxgan.main --mode=predict --workdir=runs/digit_scenes --images=scenes/ "
    "[--images=more/*.jpg ...] [--threshold=configured|global|per_class|0.3] "
    "[--output=PREFIX]": Same(
        edit=(
            ("[--images=more/*.jpg ...]", "--images='more/*.jpg'"),
            ("[--threshold=configured|global|per_class|0.3]", "--threshold=per_class"),
            ("[--output=PREFIX]", "--output=out/predicted"),
        )
    ),
    'python -c " import os, runpy; from PIL import Image from jaxgan.data.datasets import '
    "get_source config = runpy.run_path('configs/digit_scenes.py')['get_config']() images, "
    "labels = get_source(config.data).reader('test').read(range(6)) os.makedirs('scenes', "
    "exist_ok=True) for i, (image, y) in enumerate(zip(images, labels)): "
    "Image.fromarray(image).save(f'scenes/test_{i}.png') print(f'scenes/test_{i}.png true "
    "labels:', [d for d in range(10) if y[d]])\"": Same(
        edit=(("['get_config']()", "['get_config']('')\nconfig.data.builder_config = 'small'"),)
    ),
    "python -m jaxgan.diagnose --workdir=runs/embedded_wgan --compare=runs/embedded_no_critic "
    "[--out=FOLDER] [--threshold=configured|global|per_class|0.3] [--checkpoint_step=best]": Same(
        edit=(
            ("[--out=FOLDER]", "--out=out/diagnostics"),
            ("[--threshold=configured|global|per_class|0.3]", "--threshold=global"),
            ("[--checkpoint_step=best]", "--checkpoint_step=best"),
        )
    ),
    "python -m jaxgan.main --config=configs/digit_scenes.py --workdir=runs/embedded_wgan": Same(
        TINY
    ),
    "python -m jaxgan.main --config=configs/digit_scenes.py:no_critic "
    "--workdir=runs/embedded_no_critic": Same(TINY),
    "python -m jaxgan.diagnose --workdir=runs/embedded_wgan --compare=runs/embedded_no_critic "
    "--out=runs/diagnostics": Same(),
    "python -m jaxgan.main --distributed --coordinator_address=HOST0:1234 --num_processes=N "
    "--process_id=i --config=configs/coco.py --workdir=/shared/runs/coco": Covered(
        "tests/test_documented_commands.py::TestSeveralProcesses::test_two_processes"
    ),
    'gcloud compute tpus tpu-vm ssh NAME --worker=all --command="cd jaxgan && python -m '
    "jaxgan.main --distributed --config=configs/coco.py --config.data.data_dir=gs://BUCKET/tfds "
    '--workdir=/mnt/BUCKET/runs/coco"': Elsewhere(
        "a TPU pod slice; what it runs on each worker is the several-process command above"
    ),
    # docs/configuration.md
    "python -m jaxgan.main --config=configs/coco.py:resnet152 --workdir=runs/coco_r152 "
    "--config.schedule.batch_size=64 --config.method.alpha=5 --config.model.dtype=bfloat16": Same(
        TINY_OTHER
    ),
    # docs/datasets.md
    "python -m jaxgan.data.prepare --config=configs/coco.py:inception_v3 "
    "--config.data.data_dir=DIR": Same(
        "--config.data.image_size=16", edit=(("=DIR", "=$HOME/tensorflow_datasets"),)
    ),
    "python -m jaxgan.data.coco --data_dir=$HOME/tensorflow_datasets": Covered(
        "tests/test_documented_commands.py::TestDatasets::test_coco_build"
    ),
    "python -m jaxgan.main --config=configs/coco.py:resnet101 --workdir=runs/coco_resnet101 "
    "--config.model.pretrained=weights/resnet101 "
    "--config.data.data_dir=$HOME/tensorflow_datasets": Same(PRETRAINED),
    "python -m jaxgan.data.nuswide --manual_dir=NUS-WIDE "
    "--data_dir=$HOME/tensorflow_datasets": Same(),
    "python -m jaxgan.main --config=configs/nuswide.py:resnet101 "
    "--workdir=runs/nuswide_resnet101 --config.model.pretrained=weights/resnet101 "
    "--config.data.data_dir=$HOME/tensorflow_datasets": Same(PRETRAINED),
    f"python -m jaxgan.main --config=configs/custom.py:cpu --workdir=runs/photos {PHOTOS}": Same(
        TINY_OTHER
    ),
    "python -m jaxgan.main --config=configs/custom.py:cpu,no_critic "
    f"--workdir=runs/photos_no_critic {PHOTOS}": Same(TINY_OTHER),
    f"python -m jaxgan.main --config=configs/custom.py:resnet50 --workdir=runs/photos_r50 {PHOTOS} "
    "--config.model.pretrained=weights/resnet50": Same(PRETRAINED),
    "python -m jaxgan.main --config=configs/custom.py:cpu --workdir=runs/photos --mode=eval "
    f"{PHOTOS}": Same(TINY_OTHER),
    # docs/pretrained_weights.md
    "python -m jaxgan.convert --arch=resnet101 --src=resnet101-63fe2227.pth "
    "--out=weights/resnet101": Same("--no_hash_check"),  # a random file under the real name
    # docs/results.md
    "python experiments/seed_table.py --seeds=0,1,2 --workdir=runs/embedded_table "
    "--out=experiments/results/embedded_table": Same(TINY, edit=(("--seeds=0,1,2", "--seeds=0"),)),
    "python experiments/hard_objects.py --table=experiments/results/embedded_table.json "
    "--out=experiments/results/hard_objects.md": Same(),
    "python experiments/seed_table.py --seeds=0,1,2 --losses=bce,asl "
    "--workdir=runs/embedded_table --out=experiments/results/embedded_table_asl": Same(
        TINY, edit=(("--seeds=0,1,2", "--seeds=0"),)
    ),
    "python experiments/prepare_ucmerced.py --images_dir=photos/UCMerced_LandUse/Images "
    "--multilabels=LandUse_Multilabeled.txt --out=photos/ucmerced17.csv": Same(),
    "python experiments/seed_table.py --config=configs/custom.py:cpu --seeds=0,1,2 "
    f"--workdir=runs/photos_ucm --out=experiments/results/photos_table_ucmerced {UCMERCED}": Same(
        TINY_OTHER, edit=(ONE_SEED,)
    ),
    "python experiments/seed_table.py --config=configs/custom.py:cpu --seeds=0,1,2 "
    f"--workdir=runs/photos_miml --out=experiments/results/photos_table_miml {MIML}": Same(
        TINY_OTHER, edit=(ONE_SEED, *MIML_AS_UCMERCED)
    ),
    # docs/critic.md: the study's script runs end to end at toy size in its own test.
    "python experiments/dependency_study.py --levels=shuffled,scenes,strong "
    "--supervised_steps=300 --seeds=0,1,2 --workdir=runs/dependency_study "
    "--out=experiments/results/dependency_study_short "
    "--config.schedule.adversarial_steps=200": DEPENDENCY_STUDY,
    "python experiments/dependency_study.py --levels=shuffled,scenes,strong "
    "--supervised_steps=1200 --seeds=0,1,2 --workdir=runs/dependency_study "
    "--out=experiments/results/dependency_study "
    "--config.schedule.adversarial_steps=200": DEPENDENCY_STUDY,
    "python experiments/phase_switch.py --variants=paper,scaled,alpha1,reset --seeds=0,1,2 "
    "--workdir=runs/phase_switch --out=experiments/results/phase_switch_embedded "
    "--config.schedule.adversarial_steps=200": PHASE_SWITCH,
    "python experiments/phase_switch.py --variants=paper,scaled,alpha1 --seeds=0,1,2 "
    "--workdir=runs/phase_switch_photos --out=experiments/results/phase_switch_ucmerced "
    f"--config=configs/custom.py:cpu {UCMERCED} --config.method.alpha=10 "
    "--config.optim.generator_learning_rate=1e-3 --config.optim.generator_decay_steps=0": (
        PHASE_SWITCH
    ),
    # The recipe for real photos: the reference, then each candidate, on both sets.
    **{
        "python experiments/seed_table.py --only=no_critic --seeds=0,1,2 "
        f"--workdir=runs/photos_{short} --out=experiments/results/photos_reference_{name} "
        f"--config=configs/custom.py:cpu {data} --config.optim.generator_learning_rate=1e-4 "
        "--config.optim.generator_decay_steps=0": Same(TINY_OTHER, edit=(ONE_SEED, *as_ucmerced))
        for short, name, data, as_ucmerced in PHOTO_SETS
    },
    **{
        "python experiments/phase_switch.py --variants=alpha1,scaled --seeds=0,1,2 "
        f"--workdir=runs/photos_{short} --out=experiments/results/photos_recipe_{rate}_{name} "
        f"--config=configs/custom.py:cpu {data} --config.method.alpha=10"
        + ("" if rate == "3e-4" else f" --config.optim.generator_learning_rate={rate}"): (
            PHASE_SWITCH
        )
        for short, name, data, _ in PHOTO_SETS
        for rate in ("1e-3", "3e-4")
    },
    # docs/performance.md: each benchmark's mode runs in tests/test_benchmarks.py.
    "python benchmarks/steps.py --model=resnet101 --image_size=224 --batch_size=32 "
    "--dtype=bfloat16 --out=benchmarks/results/steps_gpu_resnet101": STEPS_BENCHMARK,
    "python benchmarks/torch_baseline.py --interleaved --model=resnet18 --image_size=112 "
    "--batch_size=16 --rounds=5 --iters=2 --out=benchmarks/results/compare_torch_cpu": Covered(
        BENCHMARKS + "test_torch_baseline"
    ),
    "python benchmarks/steps.py --startup --iters=3 --out=benchmarks/results/startup_cpu": Covered(
        BENCHMARKS + "test_steps_startup"
    ),
    "python benchmarks/torch_baseline.py --model=resnet18 --image_size=112 --batch_size=16 "
    "--out=benchmarks/results/torch_reference_resnet18_cpu": Covered(
        BENCHMARKS + "test_torch_baseline"
    ),
    "python benchmarks/steps.py --model=resnet18 --image_size=112 --batch_size=16 "
    "--out=benchmarks/results/benchmark_resnet18_cpu": STEPS_BENCHMARK,
    "python benchmarks/conv.py --image_size=112 --batch_size=16 --rounds=7 --iters=3 "
    "--cpu_runtime=jax --out=benchmarks/results/conv_parts_cpu": Covered(BENCHMARKS + "test_conv"),
    "python benchmarks/steps.py --model=resnet18 --image_size=112 --batch_size=16 "
    "--cpu_runtime=project": STEPS_BENCHMARK,
    "python benchmarks/steps.py --model=resnet18 --image_size=112 --batch_size=16 "
    "--cpu_runtime=jax": STEPS_BENCHMARK,
    "python benchmarks/steps.py --model=resnet50 --image_size=224 --batch_size=16 "
    "--steps=supervised,adversarial --compile_only "
    "--out=benchmarks/results/memory_resnet50_remat0": Covered(
        BENCHMARKS + "test_steps_compile_only"
    ),
    "python benchmarks/steps.py --model=resnet50 --image_size=224 --batch_size=16 "
    "--steps=supervised,adversarial --compile_only --remat "
    "--out=benchmarks/results/memory_resnet50_remat1": Covered(
        BENCHMARKS + "test_steps_compile_only"
    ),
    "python benchmarks/steps.py --backbones --cpu_runtime=jax "
    "--out=benchmarks/results/bench_backbones": Covered(BENCHMARKS + "test_steps_backbones"),
    "python benchmarks/input.py --mode=cpu --iters=150": INPUT_CPU,
    "python benchmarks/input.py --mode=cpu --iters=150 --config.data.augment=paper "
    "--config.data.cache_decoded=False": INPUT_CPU,
    "python benchmarks/input.py --mode=cpu --iters=150 --config.data.augment=paper "
    "--config.data.cache_decoded=False --config.data.image_size=224 "
    "--config.data.normalization=imagenet": INPUT_CPU,
    "python benchmarks/input.py --mode=stall --out=benchmarks/results/input_stall_cpu": INPUT_STALL,
    "python benchmarks/input.py --mode=stall --iters=5 --rounds=8 --config=configs/custom.py:cpu "
    f"{PHOTOS} --out=benchmarks/results/input_stall_photos_cpu": Same(
        f"{TINY_OTHER} --phase=supervised --iters=1 --rounds=1"
    ),
    "python benchmarks/input.py --mode=pipeline --cores=1,2 --seconds=20 "
    "--out=benchmarks/results/input_pipeline_cpu": Covered(BENCHMARKS + "test_input_pipeline"),
}


def test_every_documented_command_is_listed():
    documented = documented_commands()
    missing = sorted(set(documented) - set(COMMANDS))
    assert not missing, "documented but not in COMMANDS:\n" + "\n".join(map(repr, missing))
    stale = sorted(set(COMMANDS) - set(documented))
    assert not stale, "in COMMANDS but no document shows it:\n" + "\n".join(map(repr, stale))
    ran = {command for group in GROUPS.values() for command in group}
    for command, how in COMMANDS.items():
        if isinstance(how, Covered):
            path, _, name = how.test.partition("::")
            with open(os.path.join(ROOT, path)) as f:
                assert f"def {name.split('::')[-1]}(" in f.read(), (command, how)
        elif isinstance(how, Same | Run):
            assert command in ran, f"no test class runs {command!r}"


def runnable(command: str) -> str:
    """The shell command that runs `command`'s tiny form."""
    how = COMMANDS[command]
    if isinstance(how, Run):
        return how.command
    text = documented_commands()[command]
    for old, new in how.edit:
        assert old in text, (old, command)
        text = text.replace(old, new)
    return f"{text} {how.extra}".strip()


def workspace(root) -> str:
    """A folder to run commands in: the repository's configs and scripts, and a home."""
    os.symlink(os.path.join(ROOT, "configs"), os.path.join(root, "configs"))
    for folder in ("experiments", "benchmarks"):
        os.makedirs(os.path.join(root, folder))
        for script in glob.glob(os.path.join(ROOT, folder, "*.py")):
            os.symlink(script, os.path.join(root, folder, os.path.basename(script)))
    os.makedirs(os.path.join(root, "home"))
    return str(root)


def user_environment(folder: str) -> dict:
    """This process's environment as a user's shell has it: `folder`/home as the home, one
    CPU device (conftest forces four), the test suite's compilation settings kept."""
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"}
    xla_flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in xla_flags if "host_platform_device_count" not in f)
    env.update(HOME=os.path.join(folder, "home"), PYTHONPATH=ROOT)
    return env


def run(folder: str, command: str, *, shell_text: str | None = None) -> str:
    """Runs the documented `command` (its tiny form) in `folder`; returns its output."""
    text = shell_text or runnable(command)
    env = user_environment(folder)
    result = subprocess.run(
        ["bash", "-c", text], cwd=folder, env=env, capture_output=True, text=True, timeout=900
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{text}\n{output[-4000:]}"
    assert "Traceback" not in result.stderr, f"{text}\n{result.stderr[-4000:]}"
    return result.stdout


def commands_of(group: str) -> list[str]:
    return [c for c in GROUPS[group] if c in COMMANDS]


# Each test class's commands, in the order it runs them (a user's order).
README_QUICK_START = next(c for c in COMMANDS if c.startswith("python3.11") and "-e . &&" in c)
GROUPS = {
    "embedded": [
        README_QUICK_START,
        "python -m jaxgan.main --config=configs/digit_scenes.py --workdir=runs/digit_scenes",
        "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval",
        "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval --checkpoint_step=best",
        "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval --checkpoint_step=1400",
        next(c for c in COMMANDS if c.startswith('python -c "')),
        "python -m jaxgan.main --mode=predict --workdir=runs/digit_scenes --images=scenes/",
        next(
            c for c in COMMANDS if c.startswith("python -m jaxgan.main --mode=predict") and "[" in c
        ),
        "python -m jaxgan.diagnose --workdir=runs/digit_scenes",
        "python -m jaxgan.main --config=configs/digit_scenes.py --workdir=runs/embedded_wgan",
        "python -m jaxgan.main --config=configs/digit_scenes.py:no_critic "
        "--workdir=runs/embedded_no_critic",
        "python -m jaxgan.diagnose --workdir=runs/embedded_wgan --compare=runs/embedded_no_critic "
        "--out=runs/diagnostics",
        next(c for c in COMMANDS if "--compare" in c and "[" in c),
    ],
    "results": [
        c
        for c in COMMANDS
        if c.startswith("python experiments/") and isinstance(COMMANDS[c], Same | Run)
    ],
    "photos": [
        c
        for c in COMMANDS
        if "configs/custom.py" in c and "experiments" not in c and "pretrained" not in c
    ],
    "datasets": [
        c
        for c in COMMANDS
        if ("coco" in c or "nuswide" in c or "jaxgan.convert" in c or "pretrained=" in c)
        and "distributed" not in c
        and "gcloud" not in c
        and isinstance(COMMANDS[c], Same | Run)
    ],
}


@pytest.fixture(scope="class")
def folder(tmp_path_factory):
    return workspace(tmp_path_factory.mktemp("user"))


def tiny_photos(root: str, count: int = 40, seed: int = 0) -> None:
    """root/photos: small JPEGs in sub-folders and a labels.csv of three classes."""
    rng = np.random.default_rng(seed)
    from PIL import Image

    rows = ["filename,cat,dog,sky"]
    for i in range(count):
        name = f"trip{i % 2}/IMG_{i:04d}.jpg"
        os.makedirs(os.path.join(root, "photos", os.path.dirname(name)), exist_ok=True)
        pixels = rng.integers(0, 256, (24 + i % 5, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, "photos", name))
        labels = [int(i % 2 == 0), int(i % 3 == 0), int(i % 4 != 3 or i % 2 == 1)]
        rows.append(f"{name},{','.join(map(str, labels))}")
    with open(os.path.join(root, "photos", "labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")


@pytest.mark.slow
class TestEmbedded:
    """README's quick start and commands, and docs/usage.md's, on the embedded data."""

    def test_commands(self, folder):
        out, ran = {}, {}
        for command in GROUPS["embedded"]:
            if runnable(command) in ran:  # the same tiny form as an earlier command's
                out[command] = ran[runnable(command)]
                continue
            if "more/*.jpg" in command:  # the full predict form: a glob of other images
                from PIL import Image

                os.makedirs(os.path.join(folder, "more"))
                Image.open(os.path.join(folder, "scenes", "test_0.png")).save(
                    os.path.join(folder, "more", "scene.jpg")
                )
            out[command] = ran[runnable(command)] = run(folder, command)
        quick_start = out[README_QUICK_START]
        assert "[supervised] bce=" in quick_start and "[adversarial]" in quick_start
        assert "test metrics after step 4" in quick_start
        named = (
            "python -m jaxgan.main --workdir=runs/digit_scenes --mode=eval --checkpoint_step=1400"
        )
        assert "checkpoint at step 3" in out[named]
        readme_predict = (
            "python -m jaxgan.main --mode=predict --workdir=runs/digit_scenes --images=scenes/"
        )
        assert "predicted 6 image(s)" in out[readme_predict]
        assert os.path.isfile(os.path.join(folder, "out", "predicted.csv"))
        assert os.path.isfile(os.path.join(folder, "runs", "diagnostics", "diagnostics.json"))
        assert os.path.isfile(os.path.join(folder, "out", "diagnostics", "cooccurrence.png"))


@pytest.mark.slow
class TestPhotos:
    """docs/datasets.md's commands for a folder of your own photos."""

    def test_commands(self, folder):
        tiny_photos(folder)
        out = {command: run(folder, command) for command in GROUPS["photos"]}
        assert "test metrics" in next(text for c, text in out.items() if "--mode=eval" in c)
        assert "input costs" in next(text for c, text in out.items() if "--mode=stall" in c)


def ucmerced(root: str, rng) -> None:
    """A tiny stand-in of UC Merced's layout: two scene classes of 100 TIFFs each, and a
    LandUse_Multilabeled.txt of three labels."""
    from PIL import Image

    images = os.path.join(root, "photos", "UCMerced_LandUse", "Images")
    rows = ["IMAGE\\LABEL\tbuildings\tcars\ttrees"]
    for scene in ("beach", "forest"):
        os.makedirs(os.path.join(images, scene))
        for number in range(100):
            name = f"{scene}{number:02d}"
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(images, scene, f"{name}.tif"))
            labels = [int(number % 2 == 0), int(number % 3 == 0), 1]
            rows.append(name + "".join(f"\t{v}" for v in labels))
    with open(os.path.join(root, "LandUse_Multilabeled.txt"), "w") as f:
        f.write("\n".join(rows) + "\n")


@pytest.mark.slow
class TestResults:
    """docs/results.md: the seed tables, the hard objects, the real-photo table."""

    def test_commands(self, folder):
        ucmerced(folder, np.random.default_rng(0))
        ran = set()
        for command in GROUPS["results"]:
            tiny = " ".join(runnable(command).split())
            if tiny not in ran:  # the same tiny form as an earlier command's
                ran.add(tiny)
                run(folder, command)
        with open(os.path.join(folder, "experiments", "results", "embedded_table_asl.json")) as f:
            rows = json.load(f)["results"]
        assert any(name.startswith("ASL + WGAN-gp minus") for name in rows)
        assert os.path.isfile(os.path.join(folder, "experiments", "results", "hard_objects.md"))
        for table in ("photos_table_ucmerced.md", "photos_reference_ucmerced.md"):
            assert os.path.isfile(os.path.join(folder, "experiments", "results", table))


def torchvision_file(path: str, arch: str) -> None:
    """A torchvision `.pth` of `arch` with random weights, as torchvision saves them."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.save(getattr(torchvision.models, arch)().state_dict(), path)


@pytest.mark.slow
class TestDatasets:
    """docs/datasets.md and docs/pretrained_weights.md: MS-COCO (generated records in its
    place), NUS-WIDE (a generated release), converted weights."""

    def test_commands(self, folder):
        data = os.path.join(folder, "home", "tensorflow_datasets")
        torchvision_file(os.path.join(folder, "resnet101-63fe2227.pth"), "resnet101")
        torchvision_file(os.path.join(folder, "resnet18.pth"), "resnet18")
        setup = [
            "python -m jaxgan.convert --arch=resnet18 --src=resnet18.pth --out=weights/resnet18",
            GENERATED_COCO.format(data=data),
        ]
        for text in setup:
            run(folder, text, shell_text=text)
        from test_nuswide import make_release

        make_release(os.path.join(folder, "NUS-WIDE"), np.random.default_rng(0))
        tiny_photos(folder)
        for command in GROUPS["datasets"]:
            run(folder, command)
        assert os.path.isfile(os.path.join(folder, "weights", "resnet101", "pretrained.json"))

    def test_coco_build(self, tmp_path, capsys):
        """`python -m jaxgan.data.coco`, in process on TFDS's mock coco/2014 (the real one is
        a 37.6 GiB download): it builds and prepares the records training reads."""
        import tensorflow_datasets as tfds

        from jaxgan.data.coco import __main__ as coco_main

        with tfds.testing.mock_data(num_examples=8):
            coco_main.main([f"--data_dir={tmp_path}", "--image_size=16"])
        assert glob.glob(str(tmp_path / "jaxgan_records" / "coco" / "*" / "*" / "*" / "index.json"))


@pytest.mark.slow
class TestSeveralProcesses:
    """docs/usage.md's several-host command, as two processes on this machine."""

    def test_two_processes(self, folder):
        data = os.path.join(folder, "home", "tensorflow_datasets")
        text = GENERATED_COCO.format(data=data)
        run(folder, text, shell_text=text)
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = s.getsockname()[1]
        documented = next(
            c for c in COMMANDS if c.startswith("python -m jaxgan.main --distributed")
        )
        texts = [
            documented.replace("HOST0:1234", f"localhost:{port}")
            .replace("--num_processes=N", "--num_processes=2")
            .replace("--process_id=i", f"--process_id={i}")
            .replace("/shared/runs/coco", "runs/coco")
            + f" {TINY_OTHER}"
            for i in (0, 1)
        ]
        env = user_environment(folder)
        processes = [
            subprocess.Popen(
                ["bash", "-c", t],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for t in texts
        ]
        outputs = [p.communicate(timeout=900)[0] for p in processes]
        for p, output in zip(processes, outputs, strict=True):
            assert p.returncode == 0, output[-4000:]
        assert "test metrics after step 4" in outputs[0]
