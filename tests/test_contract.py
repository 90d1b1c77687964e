"""The model contract (``unet_lessons.models.base``), checked over every entry of ``MODELS``.

Each registered model is built through ``build_model`` with the core arguments only, a tiny
width and each of its own ``example_arguments``, in every ``spatial_dims`` it supports; a
model added to the registry is tested here with no new test code. Every tool of the package
(diagram, feature maps, receptive field, memory estimate, tiled inference, skip pairs) is run
on each, and so is every bad input a student is likely to feed.
"""

import ast
import inspect
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import unet_lessons
from unet_lessons.inference import predict_slicewise, predict_tiled
from unet_lessons.memory import estimate_memory
from unet_lessons.models import FEATURE_SCHEMES, MODELS, OutputAdapter, SegmentationModel, build_model, unpack_output
from unet_lessons.models.base import check_feature_keys, smallest_side
from unet_lessons.similarity import concatenated_pairs
from unet_lessons.viz import (analytic_receptive_field, draw_architecture, feature_maps, gradient_receptive_field,
                              layer_specs, meta_copy, textbook_receptive_field)

IN, OUT, WIDTH = 2, 3, 4
CASES = [(name, spatial_dims, index)
         for name, constructor in MODELS.items()
         for spatial_dims in constructor.spatial_dims_supported
         for index in range(len(constructor.example_arguments))]
IDS = [f"{name}-{dims}d-{index}" for name, dims, index in CASES]


def build(name: str, spatial_dims: int, index: int) -> SegmentationModel:
    torch.manual_seed(0)
    return build_model(name, in_channels=IN, out_channels=OUT, spatial_dims=spatial_dims, width=WIDTH,
                       **MODELS[name].example_arguments[index])


def batch(model: SegmentationModel, sizes=None) -> torch.Tensor:
    sizes = sizes or [smallest_side(model)] * model.spatial_dims
    return torch.randn(2, IN, *sizes)


@pytest.fixture(params=CASES, ids=IDS)
def model(request) -> SegmentationModel:
    return build(*request.param)


# ----- attributes ----------------------------------------------------------------------------
def test_declares_the_contract_attributes(model):
    assert isinstance(model, SegmentationModel)
    assert model.spatial_dims in type(model).spatial_dims_supported
    assert (model.in_channels, model.out_channels) == (IN, OUT)
    assert model.padding in ("same", "valid")
    assert isinstance(model.depth, int) and model.depth >= 1
    assert model.feature_scheme in FEATURE_SCHEMES
    # The recorded arguments are plain, name the core ones and rebuild the same network.
    arguments = model.arguments
    assert type(arguments) is dict
    assert {k: arguments[k] for k in ("in_channels", "spatial_dims", "width")} == dict(
        in_channels=IN, spatial_dims=model.spatial_dims, width=WIDTH)
    rebuilt = type(model)(**arguments)
    assert rebuilt.arguments == arguments
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_output_size_and_valid_sizes_agree_with_forward_passes(model):
    sizes = model.valid_sizes(smallest_side(model), smallest_side(model) + 80)[:2]
    assert len(sizes) == 2 and all(model.output_size(s) is not None for s in sizes)
    shape = (sizes * 2)[:model.spatial_dims]  # two different sizes on the axes
    model.eval()
    with torch.no_grad():
        logits = unpack_output(model(batch(model, shape))).logits
    assert tuple(logits.shape) == (2, OUT, *(model.output_size(s) for s in shape))
    if model.padding == "same":
        assert all(model.output_size(s) == s for s in sizes)
    for size in range(1, sizes[0]):
        assert (model.output_size(size) is None) == (size not in model.valid_sizes(1, sizes[0]))


# ----- outputs and features ------------------------------------------------------------------
def test_outputs_are_one_of_the_three_kinds(model):
    x = batch(model)
    expected = (2, OUT, *(model.output_size(s) for s in x.shape[2:]))
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
    fig = draw_architecture(meta_copy(model), (1, IN, *[smallest_side(model)] * model.spatial_dims))
    assert isinstance(fig, Figure) and fig.axes and fig.get_suptitle() + fig.axes[0].get_title()


def test_receptive_field_from_the_layers_equals_the_measured_one(model):
    specs = layer_specs(model.deepest_path())
    assert textbook_receptive_field(specs)[-1]["r"] > 1
    side = smallest_side(model)
    out = model.output_size(side)
    position = [out // 2] * model.spatial_dims
    box = analytic_receptive_field(specs, [side] * model.spatial_dims, position)
    _, measured = gradient_receptive_field(model, [side] * model.spatial_dims, position)
    assert box == measured


def test_memory_estimate(model):
    x = batch(model)
    estimate = estimate_memory(model, tuple(x.shape[1:]), batch_size=2)
    weights = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert estimate.parameters == weights and estimate.activations > 2 * OUT * x[0, 0].numel() * 4


def test_tiled_and_slicewise_inference(model):
    model.eval()
    side = smallest_side(model)
    tile = model.output_size(side) if model.padding == "valid" else side
    image = torch.randn(IN, *[2 * tile + 1] * model.spatial_dims)  # not a whole number of tiles
    out = predict_tiled(model, image, tile)
    assert tuple(out.shape) == (OUT, *image.shape[1:])
    if model.spatial_dims == 2 and model.padding == "same":
        volume = torch.randn(IN, 3, side, side)
        assert tuple(predict_slicewise(model, volume).shape) == (OUT, 3, side, side)


# ----- bad inputs ------------------------------------------------------------------------------
def test_bad_inputs_are_refused_with_a_fix(model):
    model.eval()
    x = batch(model)
    name = type(model).__name__
    with pytest.raises(ValueError, match=rf"{name}.*expects a {model.spatial_dims + 2}-D input.*unsqueeze"):
        model(x[0])
    with pytest.raises(ValueError, match=rf"in_channels={IN}.*got {IN + 1} channels.*in_channels={IN + 1}"):
        model(torch.randn(2, IN + 1, *x.shape[2:]))
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
    logits = unpack_output(meta(torch.empty(1, IN, *[smallest_side(model)] * model.spatial_dims, device="meta"))).logits
    assert logits.device.type == "meta"


# ----- constructor -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_unsupported_spatial_dims_are_refused(name):
    for spatial_dims in {2, 3} - set(MODELS[name].spatial_dims_supported):
        with pytest.raises(ValueError, match=rf"spatial_dims={spatial_dims}"):
            build_model(name, in_channels=1, out_channels=2, spatial_dims=spatial_dims, width=2)


# ----- no tool names a model -----------------------------------------------------------------
MODEL_NAMES = {name for module in ("unet", "vnet", "unetpp", "fcn")
               for name, obj in vars(getattr(unet_lessons.models, module)).items()
               if inspect.isclass(obj) and obj.__module__ == f"unet_lessons.models.{module}"}
TOOLS = sorted(str(p) for p in [*Path(unet_lessons.__file__).parent.glob("viz/*.py")]
               + [Path(unet_lessons.__file__).parent / f"{n}.py" for n in ("similarity", "inference", "memory", "utils")])


@pytest.mark.parametrize("path", TOOLS, ids=[Path(p).name for p in TOOLS])
def test_no_tool_names_a_model_class(path):
    tree = ast.parse(Path(path).read_text())
    named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    named |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    named |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert MODEL_NAMES & named == set()


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
