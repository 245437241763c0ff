"""Converted torchvision weights reproduce torchvision's outputs (skipped without torch).

For each of the paper's backbones a torchvision model with random weights and random BatchNorm
statistics is saved as `.pth` and as safetensors, converted with the CLI, loaded with
`load_pretrained` and run in eval mode on the same images: logits and pooled features agree to
1e-4 in float32. Inputs are reduced (the smallest each backbone takes: VGG-16 32 px,
Inception-v3 75 px; ResNets, which take any size, 64 px) but the architectures are the real,
full-width ones. The backbone specs (`jaxgan.models.GENERATORS`) are checked against torchvision
here too: feature width and the input size of the ImageNet weights.
"""

import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import convert as cli
from jaxgan.models import GENERATORS, PRETRAINED
from jaxgan.models.inception import inception_v3
from jaxgan.weights import load_pretrained
from jaxgan.weights.mapping import ARCHS, build_model, convert_state_dict

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")
# Full-width architectures: compiled as users run them (and much faster to run that way).
pytestmark = [pytest.mark.xla_optimized, pytest.mark.slow]

PAPER = ("resnet101", "resnet152", "vgg16", "inception_v3")
# The smallest input each backbone takes; 64 px for the ResNets, which take any.
SIZES = {a: GENERATORS[a].min_image_size if GENERATORS[a].min_image_size > 1 else 64 for a in PAPER}
TOLERANCE = 1e-4
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _head_attr(arch):
    return ("classifier", 6) if arch == "vgg16" else ("fc", None)


def _set_head(model, arch, module):
    name, index = _head_attr(arch)
    if index is None:
        old = getattr(model, name)
        setattr(model, name, module)
    else:
        old = getattr(model, name)[index]
        getattr(model, name)[index] = module
    return old


def torchvision_model(arch, size, seed=0):
    """torchvision `arch` with random weights, biases and BatchNorm statistics, in eval mode.

    BatchNorm statistics are first calibrated on a random batch (so activations stay O(1)
    through 150 layers and the 1e-4 comparison is meaningful) and then perturbed, so they
    differ from any batch's statistics."""
    torch.manual_seed(seed)
    kwargs = {"aux_logits": True, "init_weights": False} if arch == "inception_v3" else {}
    model = getattr(torchvision.models, arch)(weights=None, **kwargs)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, (2.0 / module.in_features) ** 0.5)
                module.bias.normal_(0, 0.1)
            elif isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.normal_(0, 0.05)
        for name, norm in model.named_modules():
            if not isinstance(norm, torch.nn.BatchNorm2d):
                continue
            # A residual branch's last BatchNorm is scaled down, as in trained ResNets, so the
            # residual stream does not grow with depth.
            last = re.search(r"layer\d\.\d+\.bn3$", name) or (
                re.search(r"layer\d\.\d+\.bn2$", name) and arch in ("resnet18", "resnet34")
            )
            # Positive biases keep most ReLUs open: a random network with zero-mean biases is
            # chaotic and amplifies float32 rounding far beyond what trained networks do.
            if last:
                norm.weight.uniform_(0.1, 0.4)
                norm.bias.normal_(0, 0.1)
            else:
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(1.0, 0.2)
            norm.momentum = 1.0  # the running statistics become the batch's
        aux = getattr(model, "AuxLogits", None)
        if aux is not None:
            model.AuxLogits = None  # too small an input for the auxiliary head's 5x5 conv
        model.train()
        model(torch.randn(32, 3, size, size))
        if aux is not None:
            model.AuxLogits = aux
        for norm in norms:
            norm.momentum = 0.1
            std = norm.running_var.sqrt()
            norm.running_mean.add_(0.1 * std * torch.randn_like(std))
            norm.running_var.mul_(torch.empty_like(std).uniform_(0.8, 1.25))
    return model.eval()


def torch_outputs(model, arch, x):
    with torch.no_grad():
        logits = model(_nchw(x)).numpy()
        head = _set_head(model, arch, torch.nn.Identity())
        features = model(_nchw(x)).numpy()
        _set_head(model, arch, head)
    return logits, features


def fresh_variables(model, size):
    """Variables shaped as `model.init` makes them (zeros: the backbone is overwritten)."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def run_cli(arch, src, out, *extra):
    return cli.main([f"--arch={arch}", f"--src={src}", f"--out={out}", *extra])


def flax_outputs(model, variables, x):
    both = jax.jit(
        lambda v, x: (
            model.apply(v, x, train=False),
            model.apply(v, x, train=False, features_only=True),
        )
    )
    logits, features = both(variables, jnp.asarray(x))
    return np.asarray(logits), np.asarray(features)


@pytest.fixture(scope="module", params=sorted(SIZES))
def case(request, tmp_path_factory):
    arch = request.param
    size = SIZES[arch]
    model = torchvision_model(arch, size)
    folder = tmp_path_factory.mktemp(arch)
    state = model.state_dict()
    torch.save(state, folder / "weights.pth")
    safetensors_torch.save_file(
        {k: v.contiguous() for k, v in state.items()}, str(folder / "weights.safetensors")
    )
    x = np.random.RandomState(1).randn(2, size, size, 3).astype(np.float32)
    logits, features = torch_outputs(model, arch, x)
    name, index = _head_attr(arch)
    head = getattr(model, name) if index is None else getattr(model, name)[index]
    num_params = sum(
        p.numel() for key, p in model.named_parameters() if not key.startswith("AuxLogits.")
    )
    yield {
        "arch": arch,
        "size": size,
        "folder": folder,
        "x": x,
        "logits": logits,
        "features": features,
        "head": (head.weight.detach().numpy().T, head.bias.detach().numpy()),
        "num_params": num_params,
        "torch_model": model if arch == "inception_v3" else None,
    }
    shutil.rmtree(folder)  # up to 2 GB per architecture: one at a time on disk


def test_converted_pth_and_safetensors_reproduce_torchvision(case, capsys):
    arch, folder = case["arch"], case["folder"]
    assert run_cli(arch, folder / "weights.pth", folder / "from_pth") == 0
    printed = capsys.readouterr().out
    assert "mapped   " in printed and "ignored  " in printed
    assert run_cli(arch, folder / "weights.safetensors", folder / "from_st") == 0
    model = build_model(arch, num_labels=1000)
    fresh = fresh_variables(model, case["size"])
    from_pth = load_pretrained(str(folder / "from_pth"), fresh, arch)
    from_st = load_pretrained(str(folder / "from_st"), fresh, arch)
    jax.tree.map(np.testing.assert_array_equal, from_pth, from_st)
    kernel, bias = case["head"]
    from_pth["params"]["head"] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
    logits, features = flax_outputs(model, from_pth, case["x"])
    assert logits.dtype == np.float32 and features.dtype == np.float32
    assert features.shape == case["features"].shape
    # The references are O(1), so an absolute 1e-4 is a real test of the mapping.
    assert np.abs(case["logits"]).max() > 0.5
    assert np.abs(logits - case["logits"]).max() <= TOLERANCE
    assert np.abs(features - case["features"]).max() <= TOLERANCE


def test_parameter_count_equals_torchvision(case):
    model = build_model(case["arch"], num_labels=1000)
    shapes = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0), jnp.zeros((1, case["size"], case["size"], 3)), train=False
        )
    )
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"]))
    assert count == case["num_params"]


def test_metadata_records_source_and_what_was_ignored(case):
    folder = case["folder"]
    out = folder / "from_pth"
    if not out.exists():
        assert run_cli(case["arch"], folder / "weights.pth", out) == 0
    metadata = json.loads((out / "pretrained.json").read_text())
    assert metadata["arch"] == case["arch"]
    assert metadata["source"] == "weights.pth"
    ignored = " ".join(metadata["ignored"])
    head_key = "classifier.6.weight" if case["arch"] == "vgg16" else "fc.weight"
    assert head_key in ignored
    if case["arch"] == "inception_v3":
        assert "AuxLogits.fc.weight" in ignored
    if case["arch"] != "vgg16":
        assert "num_batches_tracked" in ignored


def test_timm_vgg_conv_classifier_converts_to_the_same_weights(case, tmp_path):
    if case["arch"] != "vgg16":
        pytest.skip("timm renames only VGG's classifier")
    folder = case["folder"]
    state = safetensors_torch.load_file(str(folder / "weights.safetensors"))
    timm_state = {}
    for key, value in state.items():
        if key.startswith("classifier.0."):
            key = key.replace("classifier.0.", "pre_logits.fc1.")
            value = value.reshape(4096, 512, 7, 7) if value.ndim == 2 else value
        elif key.startswith("classifier.3."):
            key = key.replace("classifier.3.", "pre_logits.fc2.")
            value = value.reshape(4096, 4096, 1, 1) if value.ndim == 2 else value
        elif key.startswith("classifier.6."):
            key = key.replace("classifier.6.", "head.fc.")
        timm_state[key] = value.contiguous()
    safetensors_torch.save_file(timm_state, str(tmp_path / "model.safetensors"))
    assert run_cli("vgg16", tmp_path / "model.safetensors", tmp_path / "out") == 0
    if not (folder / "from_pth").exists():
        assert run_cli("vgg16", folder / "weights.pth", folder / "from_pth") == 0
    model = build_model("vgg16", num_labels=3)
    fresh = fresh_variables(model, 32)
    ours = load_pretrained(str(tmp_path / "out"), fresh, "vgg16")
    reference = load_pretrained(str(folder / "from_pth"), fresh, "vgg16")
    jax.tree.map(np.testing.assert_array_equal, ours, reference)
    metadata = json.loads((tmp_path / "out" / "pretrained.json").read_text())
    assert "pre_logits.fc1.weight -> classifier.0.weight" in metadata["renamed"]


def test_inception_transform_input_matches_torchvision_pretrained_setting(case):
    """torchvision's pretrained Inception-v3 takes ImageNet-normalised input and maps it to
    [-1, 1] itself; ours takes [-1, 1] input (data.normalization="inception"), or does the same
    mapping with transform_input=True."""
    if case["arch"] != "inception_v3":
        pytest.skip("Inception-v3 only")
    folder, x = case["folder"], case["x"]
    model = case["torch_model"]
    model.transform_input = True
    try:
        reference, _ = torch_outputs(model, "inception_v3", x)
    finally:
        model.transform_input = False
    if not (folder / "from_pth").exists():
        assert run_cli("inception_v3", folder / "weights.pth", folder / "from_pth") == 0
    kernel, bias = case["head"]
    pixels = x * IMAGENET_STD + IMAGENET_MEAN  # x read as ImageNet-normalised images
    for transform_input, inputs in ((False, (pixels - 0.5) / 0.5), (True, x)):
        flax_model = inception_v3(1000, transform_input=transform_input)
        variables = load_pretrained(
            str(folder / "from_pth"), fresh_variables(flax_model, 75), "inception_v3"
        )
        variables["params"]["head"] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
        logits = np.asarray(
            jax.jit(flax_model.apply, static_argnames="train")(variables, inputs, train=False)
        )
        assert np.abs(logits - reference).max() <= TOLERANCE, transform_input


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_smaller_resnets_have_torchvision_parameter_counts_and_keys(arch):
    reference = getattr(torchvision.models, arch)(weights=None)
    model = build_model(arch, num_labels=1000)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
    )
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"]))
    assert count == sum(p.numel() for p in reference.parameters())
    # Every torchvision key is either mapped to one of our leaves or ignored on purpose.
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    _, report = convert_state_dict(state, arch)
    assert len(report["mapped"]) + len(report["ignored"]) == len(state)


@pytest.mark.parametrize("arch", ARCHS)
def test_backbone_spec_agrees_with_torchvision(arch):
    """Feature width, input size and smallest input as torchvision states them (its weights'
    metadata; the model built on the meta device, so nothing is allocated)."""
    spec = GENERATORS[PRETRAINED[arch]]
    weights = torchvision.models.get_model_weights(spec.pretrained_arch).DEFAULT
    kwargs = {"init_weights": False} if arch == "inception_v3" else {}
    with torch.device("meta"):
        reference = torchvision.models.get_model(spec.pretrained_arch, weights=None, **kwargs)
    head = reference.classifier[6] if arch == "vgg16" else reference.fc
    assert spec.features() == head.in_features
    assert [spec.image_size] == weights.transforms().crop_size
    assert (spec.min_image_size,) * 2 == weights.meta["min_size"]
    if spec.normalization == "imagenet":
        np.testing.assert_allclose(weights.transforms().mean, IMAGENET_MEAN)
        np.testing.assert_allclose(weights.transforms().std, IMAGENET_STD)
