"""The converter and `load_pretrained` fail loudly, in one line, and say what to do (no torch
needed).

Checkpoints are written as safetensors in torchvision's key layout, built from the Flax
model's own shapes, so these tests run without torch.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import weight_files as wf
from flax import traverse_util
from safetensors.numpy import save_file

from jaxgan import convert as cli
from jaxgan.weights import WeightFileError, load_pretrained
from jaxgan.weights.mapping import backbone_shapes, build_model, torch_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torchvision_state(arch, seed=0):
    """A random state dict with torchvision's keys and shapes for `arch` (incl. head/counters)."""
    rng = np.random.RandomState(seed)
    state = {}
    for path, shape in backbone_shapes(arch).items():
        if len(shape) == 4:  # HWIO -> OIHW
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif len(shape) == 2:
            shape = shape[::-1]
        state[torch_key(path)] = rng.randn(*shape).astype(np.float32)
        if path[-1] == "mean":
            state[torch_key(path).replace("running_mean", "num_batches_tracked")] = np.array(
                7, np.int64
            )
    state["fc.weight"] = rng.randn(1000, 512).astype(np.float32)
    state["fc.bias"] = rng.randn(1000).astype(np.float32)
    return state


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resnet18")
    state = torchvision_state("resnet18")
    save_file(state, str(folder / "resnet18.safetensors"))
    return folder, state


def _convert(arch, src, out, *extra):
    return cli.main([f"--arch={arch}", f"--src={src}", f"--out={out}", *extra])


def _fresh(arch, num_labels=80, width=64, size=64, random=False):
    """Variables as `model.init` makes them; zeros unless `random` (tracing is cheaper)."""
    model = build_model(arch, num_labels)
    if width != 64:
        model = model.clone(width=width)
    init = lambda x: model.init(jax.random.key(1), x, train=False)  # noqa: E731
    x = jnp.zeros((1, size, size, 3))
    if random:
        return model, jax.jit(init)(x)
    return model, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(init, x))


def test_wrong_arch_names_missing_keys_and_the_right_arch(resnet18_file, tmp_path, capsys):
    folder, _ = resnet18_file
    assert _convert("resnet34", folder / "resnet18.safetensors", tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert "missing keys: layer1.2." in error
    assert "--arch=resnet18" in error
    assert not (tmp_path / "out").exists()


def test_unexpected_key_is_an_error(resnet18_file, tmp_path, capsys):
    _, state = resnet18_file
    save_file({**state, "extra.weight": np.zeros(3, np.float32)}, str(tmp_path / "w.safetensors"))
    assert _convert("resnet18", tmp_path / "w.safetensors", tmp_path / "out") == 1
    assert "unexpected keys: extra.weight" in capsys.readouterr().err


def test_shape_mismatch_is_an_error(resnet18_file, tmp_path, capsys):
    _, state = resnet18_file
    bad = {**state, "layer1.0.conv1.weight": np.zeros((64, 64, 1, 1), np.float32)}
    save_file(bad, str(tmp_path / "w.safetensors"))
    assert _convert("resnet18", tmp_path / "w.safetensors", tmp_path / "out") == 1
    assert "shape mismatch layer1.0.conv1.weight (64, 64, 1, 1)" in capsys.readouterr().err


def test_torchvision_file_name_hash_is_checked(resnet18_file, tmp_path, capsys):
    folder, _ = resnet18_file
    data = (folder / "resnet18.safetensors").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    wrong = tmp_path / f"resnet18-{'0' if digest[0] != '0' else '1'}{digest[1:8]}.pth"
    wrong.write_bytes(data)
    assert _convert("resnet18", wrong, tmp_path / "a") == 1
    assert "corrupt" in capsys.readouterr().err
    assert _convert("resnet18", wrong, tmp_path / "b", "--no_hash_check") == 0
    right = tmp_path / f"resnet18-{digest[:8]}.pth"
    right.write_bytes(data)
    assert _convert("resnet18", right, tmp_path / "c") == 0
    metadata = json.loads((tmp_path / "c" / "pretrained.json").read_text())
    assert metadata["source_sha256"] == digest


def test_existing_output_is_not_overwritten_without_force(resnet18_file, tmp_path, capsys):
    folder, _ = resnet18_file
    src = folder / "resnet18.safetensors"
    assert _convert("resnet18", src, tmp_path / "out") == 0
    assert _convert("resnet18", src, tmp_path / "out") == 1
    assert "--force" in capsys.readouterr().err
    assert _convert("resnet18", src, tmp_path / "out", "--force") == 0


def test_load_pretrained_replaces_the_backbone_and_keeps_a_fresh_head(resnet18_file, tmp_path):
    folder, state = resnet18_file
    assert _convert("resnet18", folder / "resnet18.safetensors", tmp_path / "out") == 0
    _, fresh = _fresh("resnet18", num_labels=80, random=True)
    loaded = load_pretrained(str(tmp_path / "out"), fresh, "resnet18")
    assert jax.tree.structure(loaded) == jax.tree.structure(fresh)
    np.testing.assert_array_equal(
        loaded["params"]["head"]["kernel"], fresh["params"]["head"]["kernel"]
    )
    assert loaded["params"]["head"]["kernel"].shape == (512, 80)
    np.testing.assert_array_equal(
        loaded["params"]["layer2_0"]["downsample_conv"]["kernel"],
        state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        loaded["batch_stats"]["layer4_1"]["bn2"]["var"], state["layer4.1.bn2.running_var"]
    )
    flat_loaded = traverse_util.flatten_dict(loaded)
    flat_fresh = traverse_util.flatten_dict(fresh)
    for path, value in flat_loaded.items():
        assert value.dtype == flat_fresh[path].dtype
        if path[1] != "head":
            assert not np.array_equal(value, flat_fresh[path]), path


def test_load_pretrained_refuses_another_arch(resnet18_file, tmp_path):
    folder, _ = resnet18_file
    assert _convert("resnet18", folder / "resnet18.safetensors", tmp_path / "out") == 0
    _, fresh = _fresh("resnet34")
    with pytest.raises(ValueError, match="holds resnet18 weights.*model.name=resnet18"):
        load_pretrained(str(tmp_path / "out"), fresh, "resnet34")


def test_load_pretrained_refuses_another_width(resnet18_file, tmp_path):
    folder, _ = resnet18_file
    assert _convert("resnet18", folder / "resnet18.safetensors", tmp_path / "out") == 0
    _, fresh = _fresh("resnet18", width=16)
    with pytest.raises(ValueError, match="shape mismatch.*width must be 64"):
        load_pretrained(str(tmp_path / "out"), fresh, "resnet18")


def test_load_pretrained_on_an_unconverted_directory_says_how_to_convert(tmp_path):
    _, fresh = _fresh("resnet18")
    with pytest.raises(ValueError, match="python -m jaxgan.convert"):
        load_pretrained(str(tmp_path), fresh, "resnet18")


@pytest.mark.slow  # command-line processes
def test_converter_and_loader_run_without_torch_or_tensorflow(resnet18_file, tmp_path):
    """Accelerator hosts have neither: both are made unimportable in a fresh interpreter."""
    folder, _ = resnet18_file
    code = (
        "import sys\n"
        "for name in ('torch', 'torchvision', 'tensorflow'):\n"
        "    sys.modules[name] = None  # any import of it now raises ImportError\n"
        "from jaxgan import convert\n"
        f"assert convert.main(['--arch=resnet18', '--src={folder / 'resnet18.safetensors'}',\n"
        f"                     '--out={tmp_path / 'out'}']) == 0\n"
        "import jax, jax.numpy as jnp\n"
        "from jaxgan.weights import load_pretrained\n"
        "from jaxgan.weights.mapping import build_model\n"
        "model = build_model('resnet18', 5)\n"
        "shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),\n"
        "                                           train=False))\n"
        "fresh = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)\n"
        f"load_pretrained('{tmp_path / 'out'}', fresh, 'resnet18')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# Hostile files: one line, exit status 1, no traceback


@pytest.mark.slow  # command-line processes
def test_hostile_pth_is_one_line_through_python_m_jaxgan_convert(tmp_path):
    """The command line itself, in a fresh interpreter: a negative storage offset."""
    payload = wf.tensor_pickle("FloatStorage", "0", 4, -100, (2,), (100,))
    src = wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(16)})
    args = ["-m", "jaxgan.convert", "--arch=resnet18", f"--src={src}", f"--out={tmp_path / 'o'}"]
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith(f"error: refusing {src}: tensor 'w': its offset")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name,content,reason",
    [
        (
            "stride0.pth",
            lambda p: wf.zip_pth(
                p,
                wf.tensor_pickle("FloatStorage", "0", 1, 0, (30000, 15000), (0, 0)),
                {"0": b"0000"},
            ),
            "tensor 'w': its 1,800,000,000 bytes exceed the cap",
        ),
        (
            "overlap.safetensors",
            lambda p: p.write_bytes(
                wf.safetensors_bytes(
                    {
                        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
                    },
                    bytes(24),
                )
            ),
            "tensor 'b': its bytes 8..24 overlap",
        ),
        ("list.safetensors", lambda p: p.write_bytes(wf.safetensors_bytes([])), "JSON array"),
        ("notes.pth", lambda p: p.write_text("hello"), "not a torch checkpoint"),
    ],
)
def test_hostile_files_are_one_line_through_the_converter(tmp_path, capsys, name, content, reason):
    src = tmp_path / name
    content(src)
    assert _convert("resnet18", src, tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and reason in captured.err, captured.err
    assert captured.err.startswith(f"error: refusing {src}: ")


@pytest.fixture(scope="module")
def converted(resnet18_file, tmp_path_factory):
    folder, _ = resnet18_file
    out = tmp_path_factory.mktemp("converted") / "resnet18"
    assert _convert("resnet18", folder / "resnet18.safetensors", out) == 0
    return out


def _one_line_refusal(path, fresh, name, match):
    with pytest.raises(ValueError, match=match) as caught:
        load_pretrained(str(path), fresh, name)
    assert "\n" not in str(caught.value), str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    "metadata,match",
    [
        (b"[1, 2]", "does not name an arch"),
        (b'{"arch": 18}', "does not name an arch"),
        (b'{"arch": "\xff"}', "not a valid metadata file"),
        (b"[" * 100_000, "not a valid metadata file"),
        (b" " * (2 << 20), "larger than 1,048,576 bytes"),
    ],
)
def test_load_pretrained_refuses_damaged_metadata_in_one_line(converted, tmp_path, metadata, match):
    damaged = tmp_path / "damaged"
    shutil.copytree(converted, damaged)
    (damaged / "pretrained.json").write_bytes(metadata)
    _, fresh = _fresh("resnet18")
    error = _one_line_refusal(damaged, fresh, "resnet18", match)
    assert isinstance(error, WeightFileError) and "pretrained.json" in str(error)


def test_load_pretrained_refuses_damaged_variables_in_one_line(converted, tmp_path):
    _, fresh = _fresh("resnet18")
    missing = tmp_path / "missing"
    shutil.copytree(converted, missing)
    shutil.rmtree(missing / "variables")
    _one_line_refusal(missing, fresh, "resnet18", "variables: cannot read it")
    truncated = tmp_path / "truncated"
    shutil.copytree(converted, truncated)
    for data_file in (truncated / "variables").rglob("d/*"):
        data_file.write_bytes(data_file.read_bytes()[:100])
    _one_line_refusal(truncated, fresh, "resnet18", "variables: cannot re")


def test_load_pretrained_refuses_a_backbone_without_imagenet_weights(converted):
    _, fresh = _fresh("resnet18")
    _one_line_refusal(converted, fresh, "resnet_small", "resnet_small has no ImageNet weights")


def test_load_pretrained_reports_an_orbax_failure_during_restore_in_one_line(
    converted, monkeypatch
):
    """Damage that Orbax notices only while reading the arrays (an I/O error, a file changed
    under it) is one line too, naming the directory."""
    import orbax.checkpoint as ocp

    def fail(*args, **kwargs):
        raise OSError("Input/output error\nwhile reading chunk 7")

    monkeypatch.setattr(ocp.StandardCheckpointer, "restore", fail)
    _, fresh = _fresh("resnet18")
    error = _one_line_refusal(converted, fresh, "resnet18", "variables: cannot restore it")
    assert "Input/output error" in str(error)
