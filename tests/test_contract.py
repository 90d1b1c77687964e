"""The model contract (``unet_lessons.models.base``), checked over every entry of ``MODELS``.

Each registered model is built through ``build_model`` with the core arguments only, a tiny
width and each of its own ``example_arguments``, in every ``spatial_dims`` it supports; a
model added to the registry is tested here with no new test code. Every tool of the package
(diagram, feature maps, receptive field, memory estimate, tiled inference, skip pairs) is run
on each, and so is every bad input a student is likely to feed.
"""

import ast
import inspect
import pkgutil
import re
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn as nn
from matplotlib.figure import Figure

import unet_lessons
import unet_lessons.models
from autograd_memory import saved_activation_bytes
from toy_model import ToyPathNet
from unet_lessons.inference import predict_slicewise, predict_tiled
from unet_lessons.memory import estimate_memory
from unet_lessons.models import FEATURE_SCHEMES, MODELS, OutputAdapter, SegmentationModel, build_model, unpack_output
from unet_lessons.models.base import check_feature_keys, smallest_side
from unet_lessons.similarity import concatenated_pairs, linear_cka, skip_path_pairs
from unet_lessons.train import TrainConfig, fit
from unet_lessons.viz import (analytic_receptive_field, draw_architecture, feature_maps, gradient_receptive_field,
                              layer_specs, meta_copy, model_receptive_field, textbook_receptive_field)

IN, OUT, WIDTH = 2, 3, 4
# Every registered model, and a new one written as one file plus its registry entry (tests/toy_model.py):
# layers on its skips and two domains. Nothing below names a model class.
REGISTRY = {**MODELS, "toy": ToyPathNet}


def _domains(constructor, example: dict) -> list:
    """The domains of a multi-domain model (each is tested as a model of its own), else [None]."""
    with torch.device("meta"):
        domains = constructor(in_channels=IN, out_channels=OUT, width=WIDTH, **example).domains
    return sorted(domains) or [None]


CASES = [(name, spatial_dims, index, domain)
         for name, constructor in REGISTRY.items()
         for spatial_dims in constructor.spatial_dims_supported
         for index in range(len(constructor.example_arguments))
         for domain in _domains(constructor, constructor.example_arguments[index])]
IDS = [f"{name}-{dims}d-{index}" + (f"-{domain}" if domain else "") for name, dims, index, domain in CASES]


def build(name: str, spatial_dims: int, index: int, domain=None) -> SegmentationModel:
    torch.manual_seed(0)
    with mock.patch.dict(MODELS, REGISTRY):  # the toy's registry entry, for the length of the build
        model = build_model(name, in_channels=IN, out_channels=OUT, spatial_dims=spatial_dims, width=WIDTH,
                            **REGISTRY[name].example_arguments[index])
    return model.for_domain(domain) if domain else model


def batch(model: SegmentationModel, sizes=None) -> torch.Tensor:
    sizes = sizes or [smallest_side(model)] * model.spatial_dims
    return torch.randn(2, model.in_channels, *sizes)  # a domain may have its own input channels


@pytest.fixture(params=CASES, ids=IDS)
def model(request) -> SegmentationModel:
    return build(*request.param)


# ----- attributes ----------------------------------------------------------------------------
def test_declares_the_contract_attributes(model):
    assert isinstance(model, SegmentationModel)
    assert model.spatial_dims in (2, 3)
    domain = model.arguments.get("domain")
    expected_out = model.model.domains[domain] if domain else OUT  # a domain has its own classes
    expected_in = model.model.domain_in_channels.get(domain, IN) if domain else IN  # and may have its own inputs
    assert (model.in_channels, model.out_channels) == (expected_in, expected_out)
    assert model.padding in ("same", "valid")
    assert isinstance(model.depth, int) and model.depth >= 1
    assert model.feature_scheme in FEATURE_SCHEMES
    # The recorded arguments are plain, hold every core argument under its core name, and rebuild the network.
    arguments = model.arguments
    assert type(arguments) is dict
    assert {k: arguments[k] for k in ("in_channels", "out_channels", "spatial_dims", "width")} == dict(
        in_channels=IN, out_channels=OUT, spatial_dims=model.spatial_dims, width=WIDTH)
    rebuilt = model.rebuild()
    assert rebuilt.arguments == arguments
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_output_size_and_valid_sizes_agree_with_forward_passes(model):
    sizes = model.valid_sizes(smallest_side(model), smallest_side(model) + 80)[:2]
    assert len(sizes) == 2 and all(model.output_size(s) is not None for s in sizes)
    shape = (sizes * 2)[:model.spatial_dims]  # two different sizes on the axes
    model.eval()
    with torch.no_grad():
        logits = unpack_output(model(batch(model, shape))).logits
    assert tuple(logits.shape) == (2, model.out_channels, *(model.output_size(s) for s in shape))
    if model.padding == "same":
        assert all(model.output_size(s) == s for s in sizes)
    for size in range(1, sizes[0]):
        assert (model.output_size(size) is None) == (size not in model.valid_sizes(1, sizes[0]))


# ----- outputs and features ------------------------------------------------------------------
def test_outputs_are_one_of_the_three_kinds(model):
    x = batch(model)
    expected = (2, model.out_channels, *(model.output_size(s) for s in x.shape[2:]))
    for training in (True, False):
        model.train(training)
        unpacked = unpack_output(model(x))  # raises a TypeError for any other kind
        assert tuple(unpacked.logits.shape) == expected
        assert all(tuple(head.shape) == expected for head in unpacked.all_heads)
        assert unpacked.aux_loss is None or unpacked.aux_loss.dim() == 0


def test_forward_features_follow_the_declared_scheme(model):
    x = batch(model)
    check_feature_keys(model, list(model.forward_features(x)))
    maps = feature_maps(model, x[:1])  # the viz helper, eval mode, no gradients
    check_feature_keys(model, list(maps))
    assert all(m.dim() == model.spatial_dims + 2 for m in maps.values())


def test_skip_pairs_match_in_shape(model):
    pairs = concatenated_pairs(model, batch(model))
    assert all(key == f"level {int(key.split()[1])}" for key in pairs)
    for skip, upsampled in pairs.values():
        assert skip.dim() == model.spatial_dims + 2 and skip.shape[0] == 2
        if model.padding == "same":
            assert skip.shape[2:] == upsampled.shape[2:]


# ----- the tools -------------------------------------------------------------------------------
def test_the_diagram_draws(model):
    fig = draw_architecture(meta_copy(model), (1, model.in_channels, *[smallest_side(model)] * model.spatial_dims))
    assert isinstance(fig, Figure) and fig.axes and fig.get_suptitle() + fig.axes[0].get_title()


def elongated_input(model: SegmentationModel) -> list[int]:
    """The smallest size on every axis but the last, and a last axis longer than the receptive field.

    On a short input both boxes cover the whole input, and a model that leaves a stage out of
    its declared path would still pass; along the long axis the field must end inside the input.
    """
    field = max(textbook_receptive_field(layer_specs(path))[-1]["r"] for path in model.receptive_paths().values())
    side = smallest_side(model)
    long = smallest_side(model, minimum=int(field) + 2 * side)
    return [side] * (model.spatial_dims - 1) + [long]


def check_receptive_field(model: SegmentationModel) -> None:
    """The box computed from the declared layer paths equals the box measured by gradients, on an elongated input."""
    shape = elongated_input(model)
    position = [model.output_size(n) // 2 for n in shape]
    box = model_receptive_field(model, shape, position)
    _, measured = gradient_receptive_field(model, shape, position)
    first, last = measured[-1]
    assert 0 < first and last < shape[-1] - 1, "the field reaches both ends of the long axis: the check has no teeth"
    assert box == measured


def test_receptive_field_from_the_layers_equals_the_measured_one(model):
    assert textbook_receptive_field(layer_specs(model.deepest_path()))[-1]["r"] > 1
    check_receptive_field(model)


def test_the_receptive_field_check_catches_a_path_without_its_decoder():
    model = build("unet", 2, 0)
    # The decoder's convolutions cut out of the path: only its upsamplings remain, so the sizes still fit.
    without_decoder = [layer for name, layers in model.stage_paths().items() for layer in layers
                       if not name.startswith("dec") or isinstance(layer, nn.modules.conv._ConvTransposeNd)]
    with mock.patch.object(type(model), "deepest_path", lambda self: without_decoder):
        with pytest.raises(AssertionError):
            check_receptive_field(model)
    check_receptive_field(model)  # and passes with the model's own path


def test_memory_estimate(model):
    x = batch(model)
    estimate = estimate_memory(model, tuple(x.shape[1:]), batch_size=2)
    weights = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert estimate.parameters == weights and estimate.activations > 2 * model.out_channels * x[0, 0].numel() * 4


def test_the_memory_rules_agree_with_what_autograd_saves(model):
    """The estimate's activations against the tensors autograd really keeps for the backward pass."""
    # Maps large enough that per-channel statistics and the weights are a small part of what is saved.
    side = smallest_side(model, minimum=32 if model.spatial_dims == 2 else 16)
    x = batch(model, [side] * model.spatial_dims)
    model.train()
    try:
        model(x)
    except ValueError:  # a model that trains on one size only (a VAE branch with a dense layer)
        x = batch(model)
    torch.manual_seed(0)
    saved = saved_activation_bytes(model, x)
    estimate = estimate_memory(model, tuple(x.shape[1:]), batch_size=2, loss_tensors=0)
    assert estimate.activations == pytest.approx(saved, rel=0.1)


def test_tiled_and_slicewise_inference(model):
    model.eval()
    side = smallest_side(model)
    tile = model.output_size(side) if model.padding == "valid" else side
    image = torch.randn(model.in_channels, *[2 * tile + 1] * model.spatial_dims)  # not a whole number of tiles
    out = predict_tiled(model, image, tile)
    assert tuple(out.shape) == (model.out_channels, *image.shape[1:])
    if model.spatial_dims == 2 and model.padding == "same":
        volume = torch.randn(model.in_channels, 3, side, side)
        assert tuple(predict_slicewise(model, volume).shape) == (model.out_channels, 3, side, side)


# ----- bad inputs ------------------------------------------------------------------------------
def test_bad_inputs_are_refused_with_a_fix(model):
    model.eval()
    x = batch(model)
    name = type(model.model if "domain" in model.arguments else model).__name__  # a domain's view: its model checks
    with pytest.raises(ValueError, match=rf"{name}.*expects a {model.spatial_dims + 2}-D input.*unsqueeze"):
        model(x[0])
    channels = model.in_channels
    with pytest.raises(ValueError, match=rf"in_channels={channels}.*got {channels + 1} channels.*in_channels={channels + 1}"):
        model(torch.randn(2, channels + 1, *x.shape[2:]))
    with pytest.raises(ValueError, match=r"channels-last.*movedim\(-1, 1\)"):
        model(x.movedim(1, -1))
    with pytest.raises(TypeError, match=r"torch.float32 parameters.*got torch.float64.*x.to\(torch.float32\)"):
        model(x.double())
    with pytest.raises(TypeError, match=r"floating-point.*got torch.uint8.*x / 255"):
        model((x.abs() * 50).to(torch.uint8))
    with pytest.raises(TypeError, match=r"floating-point.*got torch.int64"):
        model(x.long())
    nan, inf = x.clone(), x.clone()
    nan[(0,) * x.dim()] = float("nan")
    inf[(1,) * x.dim()] = float("inf")
    with pytest.raises(ValueError, match="1 NaN and 0 infinite.*nan_to_num"):
        model(nan)
    with pytest.raises(ValueError, match="NaN and 1 infinite"):
        model(inf)
    side = smallest_side(model)
    bad = [s for s in range(2, side + 80) if model.output_size(s) is None and s > side // 2]
    if bad:  # some models (FCN padding to 32) take every size
        with pytest.raises(ValueError, match=rf"cannot take spatial size.*{bad[-1]}.*nearest sizes that work"):
            model(batch(model, [side] * (model.spatial_dims - 1) + [bad[-1]]))
    # The dtype is the parameters': a float64 model takes float64 input.
    assert unpack_output(model.double()(x.double())).logits.dtype == torch.float64


def test_the_checks_need_no_values_on_the_meta_device(model):
    meta = meta_copy(model).eval()
    logits = unpack_output(meta(torch.empty(1, model.in_channels, *[smallest_side(model)] * model.spatial_dims, device="meta"))).logits
    assert logits.device.type == "meta"


# ----- constructor -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_unsupported_spatial_dims_are_refused(name):
    for spatial_dims in {2, 3} - set(MODELS[name].spatial_dims_supported):
        with pytest.raises(ValueError, match=rf"spatial_dims={spatial_dims}"):
            build_model(name, in_channels=1, out_channels=2, spatial_dims=spatial_dims, width=2)


# ----- no tool names a model -----------------------------------------------------------------
PACKAGE = Path(unet_lessons.__file__).parent


def _model_classes() -> set:
    """Every class a module of unet_lessons.models defines, except the contract itself (base) and the adapter."""
    names = set()
    for info in pkgutil.iter_modules(unet_lessons.models.__path__):
        module = __import__(f"unet_lessons.models.{info.name}", fromlist=["_"])
        if info.name in ("base", "adapters"):
            continue
        names |= {name for name, obj in vars(module).items()
                  if inspect.isclass(obj) and obj.__module__ == module.__name__}
    return names


MODEL_NAMES = _model_classes()
# Every module outside models/, except the declarations of the stored benchmarks and the exercises'
# references, which name the networks they train or ask about.
TOOLS = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.parts[len(PACKAGE.parts)] not in ("models", "exercises")
               and not re.fullmatch(r"benchmark/lesson\d+\.py", str(p.relative_to(PACKAGE))))


def _names_in(source: str) -> set:
    """Every identifier the code uses, and every word of its strings (f-strings, getattr names), docstrings excepted."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    named |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    named |= {alias.name.split(".")[-1] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
              for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            try:  # code inside a string: a class looked up by name, a script run in a subprocess
                inner = ast.parse(node.value.strip())
            except SyntaxError:  # prose ("FCN-8s"): the papers' names, not classes
                continue
            one_name = (len(inner.body) == 1 and isinstance(inner.body[0], ast.Expr)
                        and isinstance(inner.body[0].value, (ast.Name, ast.Attribute)))
            statements = any(not isinstance(statement, ast.Expr) for statement in inner.body)
            if one_name or statements:  # not prose that happens to parse, such as "UNet++ L" (UNet + +L)
                named |= _names_in(node.value.strip())
    return named


def test_the_class_finder_sees_every_model():
    assert {type(build(*case[:3])).__name__ for case in CASES if case[0] != "toy"} <= MODEL_NAMES
    assert {"NoNewNet", "MyronenkoNet", "UNet", "VNet", "FCN", "UNetPlusPlus"} <= MODEL_NAMES
    assert "memory.py" in TOOLS and "train.py" in TOOLS and "viz/diagram.py" in TOOLS and len(TOOLS) > 20
    # The check reads code inside strings too: a class named in an f-string or a getattr is found.
    assert "UNet" in _names_in('x = getattr(models, "UNet")') and "VNet" in _names_in('f"{VNet}"')
    assert "NoNewNet" in _names_in('script = "from unet_lessons.models import NoNewNet"')
    assert "UNet" not in _names_in('def f():\n    """Works for a UNet."""\n')


@pytest.mark.parametrize("path", TOOLS)
def test_no_tool_names_a_model_class(path):
    assert MODEL_NAMES & _names_in((PACKAGE / path).read_text()) == set()


# ----- skips: joins, the layers on them, knocking one out ------------------------------------
ENCODER_DECODER = [case for case, name in zip(CASES, IDS)
                   if REGISTRY[case[0]].feature_scheme == "encoder_decoder"]


@pytest.mark.parametrize("case", ENCODER_DECODER, ids=[i for c, i in zip(CASES, IDS) if c in ENCODER_DECODER])
def test_every_skip_can_be_knocked_out_at_inference(case):
    model = build(*case).eval()
    x = batch(model)
    with torch.no_grad():
        before = unpack_output(model(x)).logits
        pairs = model.skip_pairs(x)
        assert list(pairs) == [f"level {i}" for i in range(model.depth)] == list(model.skip_joins())
        for level in range(model.depth):
            with model.skip_knocked_out(level):
                knocked = unpack_output(model(x)).logits
                assert model.skip_pairs(x)[f"level {level}"][0].abs().sum() > 0  # the pair shows what arrives...
            assert not torch.equal(knocked, before)  # ...and the decoder no longer sees it
        assert torch.equal(unpack_output(model(x)).logits, before)  # restored after the block
    with pytest.raises(ValueError, match=rf"skips at levels \[0.*{model.depth - 1}\].*got \[{model.depth}\]"):
        with model.skip_knocked_out(model.depth):
            pass


@pytest.mark.parametrize("case", ENCODER_DECODER, ids=[i for c, i in zip(CASES, IDS) if c in ENCODER_DECODER])
def test_a_skip_can_be_replaced_by_its_mean_and_knocked_out_for_good(case):
    model = build(*case).eval()
    x = batch(model)
    joins = model.skip_joins()
    seen = {}
    hook = joins["level 0"].register_forward_hook(lambda module, inputs, output: seen.update(out=output))
    with torch.no_grad(), model.skip_knocked_out(0, replace="mean"):
        model(x)
        skip = model.skip_pairs(x)["level 0"][0]
    hook.remove()
    assert model.knocked_out_skips() == {}
    if joins["level 0"].mode == "concat":  # what the decoder receives: each channel's mean, everywhere
        width = skip.shape[1]
        received = seen["out"][:, :width] if joins["level 0"].skip_first else seen["out"][:, -width:]
        torch.testing.assert_close(received, skip.mean(dim=tuple(range(2, skip.ndim)), keepdim=True).expand_as(skip))
    with pytest.raises(ValueError, match="'zero' or 'mean'"):
        with model.skip_knocked_out(0, replace="noise"):
            pass
    # For good: every skip carries zeros until the model is rebuilt; the weights that read them never learn.
    assert model.knock_out_skips() is model
    assert model.knocked_out_skips() == {level: "zero" for level in range(model.depth)}
    with torch.no_grad():
        knocked = unpack_output(model(x)).logits
        with model.skip_knocked_out(*range(model.depth)):
            assert torch.equal(unpack_output(model(x)).logits, knocked)
    assert model.knocked_out_skips() == {level: "zero" for level in range(model.depth)}  # the block restores "zero"


def test_a_unet_trained_without_skips_never_changes_the_weights_that_read_them():
    model = unet_lessons.models.UNet(1, 2, width=2, depth=2).knock_out_skips()
    conv = next(m for m in model.ups[-1].conv.modules() if isinstance(m, nn.Conv2d))  # the top level's first conv
    before = conv.weight.detach().clone()
    batches = [(torch.randn(2, 1, 16, 16), torch.randint(0, 2, (2, 16, 16))) for _ in range(3)]
    fit(model, batches, nn.CrossEntropyLoss(), TrainConfig(steps=3, device="cpu", progress=False, collapse_check=False))
    skip_width = model.features[0]  # the join puts the skip's channels first
    assert torch.equal(conv.weight[:, :skip_width], before[:, :skip_width])  # zero input, zero gradient
    assert not torch.equal(conv.weight[:, skip_width:], before[:, skip_width:])


def test_the_layers_on_a_skip_are_drawn_followed_and_compared():
    model = build("toy", 2, 0, "heart").eval()
    assert [len(v) for v in model.skip_modules().values()] == [1, 1]
    assert list(model.receptive_paths()) == ["deepest", "skip 0", "skip 1"]
    # The path through a Res path is not a part of the deepest path: it has the path's own convolutions.
    deepest = {id(m) for m in model.deepest_path()}
    assert any(id(m) not in deepest for m in model.receptive_paths()["skip 0"])
    fig = draw_architecture(meta_copy(model), (1, IN, 16, 16))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2 conv 3×3 / 1×1 ⊕" in texts  # the 3×3 conv and the 1×1 shortcut of each Res path unit
    assert "layers on the skip, then join" in [t.get_text() for t in fig.legends[0].get_texts()]
    pairs = skip_path_pairs(model, batch(model))
    assert list(pairs) == ["level 0", "level 1"]
    before, after = pairs["level 0"]
    assert before.shape == after.shape and 0 < linear_cka(before, after) < 1
    with pytest.raises(ValueError, match="no layers on its skips"):
        skip_path_pairs(build("unet", 2, 0), batch(build("unet", 2, 0)))


def test_the_diagram_refuses_a_layout_it_cannot_draw():
    class Interpolate(nn.Module):  # upsamples with a function, not a layer the drawing can find
        def forward(self, below):
            return nn.functional.interpolate(below, scale_factor=2.0, mode="bilinear")

    model = build("unet", 2, 2)  # upsample="interp": nn.Upsample layers, replaced below
    for up in model.ups:
        up.up = Interpolate()
    with pytest.raises(ValueError, match=r"cannot draw UNet: it found 0 upsampling layers.*for 2 decoder levels"):
        draw_architecture(meta_copy(model), (1, IN, 16, 16))


# ----- domains -----------------------------------------------------------------------------------
def test_a_multi_domain_model_is_one_model_per_domain():
    torch.manual_seed(0)
    model = ToyPathNet(IN, OUT, width=WIDTH)
    heart, liver = model.for_domain("heart"), model.for_domain("liver")
    x = torch.randn(2, IN, 16, 16)
    assert heart(x).shape[1] == OUT and liver(x).shape[1] == OUT + 1
    assert heart.model is model and {id(p) for p in heart.parameters()} == {id(p) for p in model.parameters()}
    assert torch.equal(heart(x), model(x, domain="heart"))
    with pytest.raises(ValueError, match=r"no domain 'lung'; known domains: \['heart', 'liver'\]"):
        model.for_domain("lung")
    with pytest.raises(ValueError, match=r"serves several domains.*known domains: \['heart', 'liver'\]"):
        model(x)
    with pytest.raises(ValueError, match=r"one domain per batch; this batch mixes \['heart', 'liver'\]"):
        model(x, domain=["heart", "liver"])
    with pytest.raises(ValueError, match="single-domain model"):
        build("unet", 2, 0).for_domain("heart")


def test_fit_trains_a_domain_view_and_a_batch_that_names_its_domain():
    torch.manual_seed(0)
    model = ToyPathNet(1, 2, width=2, depth=1)
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 3, (2, 8, 8))
    config = TrainConfig(steps=2, lr=1e-3, progress=False, collapse_check=False, device="cpu")
    loss = lambda logits, target: nn.functional.cross_entropy(logits, target)  # noqa: E731
    head = model.heads["liver"].weight.detach().clone()
    fit(model.for_domain("liver"), [(x, y)], loss, config)
    assert not torch.equal(model.heads["liver"].weight, head)  # the view trained the shared model's liver head
    fit(model, [{"image": x, "label": y.clamp(max=1), "domain": ["heart", "heart"]}], loss, config)
    with pytest.raises(ValueError, match="mixes"):
        fit(model, [{"image": x, "label": y.clamp(max=1), "domain": ["heart", "liver"]}], loss, config)


# ----- bad constructor arguments -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("width", [0, -4, 2.5])
def test_a_width_that_is_not_a_positive_count_is_refused(name, width):
    with mock.patch.dict(MODELS, REGISTRY), pytest.raises(ValueError, match=rf"needs width.*at least 1; got width={width}"):
        build_model(name, in_channels=1, out_channels=2, width=width)


# ----- networks of other libraries, through an adapter -------------------------------------------
def test_monai_segresnet_vae_through_the_adapter():
    from monai.networks.nets import SegResNetVAE

    torch.manual_seed(0)
    vae = SegResNetVAE(input_image_size=(16, 16, 16), vae_nz=4, spatial_dims=3, init_filters=4, in_channels=1,
                       out_channels=2, norm=("group", {"num_groups": 2}), blocks_down=(1, 1), blocks_up=(1,))
    model = OutputAdapter(vae, spatial_dims=3, in_channels=1, out_channels=2, depth=1, sizes=(16,), aux_weight=0.1)
    x = torch.randn(2, 1, 16, 16, 16)
    output = model(x)  # training: MONAI returns (logits, vae_loss); a list would mean two heads
    assert isinstance(output, dict)
    unpacked = unpack_output(output)
    assert unpacked.logits.shape == (2, 2, 16, 16, 16) and unpacked.all_heads == [unpacked.logits]
    torch.manual_seed(1)
    _, vae_loss = vae(x)
    torch.manual_seed(1)
    assert torch.allclose(unpack_output(model(x)).aux_loss, 0.1 * vae_loss)
    model.eval()
    assert isinstance(model(x), torch.Tensor)  # eval: (logits, None) -> logits
    assert model.valid_sizes(1, 40) == [16] and model.arguments["aux_weight"] == 0.1
    with pytest.raises(ValueError, match=r"nearest sizes that work: 16.*takes only the axis lengths \[16\]"):
        model(torch.randn(1, 1, 16, 16, 32))
    with pytest.raises(TypeError, match="float32 parameters"):
        model(x.double())
