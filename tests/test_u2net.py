"""3D U²-Net: separable convolutions, the domain adapters, and the counts of the authors' code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from unet_lessons.blocks import DomainConv, SeparableConv, depthwise_conv, pointwise_conv
from unet_lessons.data import DomainRoundRobin, PatchSampler
from unet_lessons.models import U2Net
from unet_lessons.viz.receptive_field import layer_specs

# Printed by tests/benchmarks/official_u2net_check.py for the authors' u2net3d.py (commit c655840), built as
# train_models.sh builds it: the universal model (line 29) and the five independent models (lines 5-9).
OFFICIAL_UNIVERSAL = 6_577_460
OFFICIAL_INDEPENDENT = {"heart": 33_113_214, "liver": 33_113_214, "hippocampus": 2_055_285, "prostate": 33_113_765,
                        "pancreas": 33_113_214}
POOLINGS = {"heart": 5, "liver": 5, "hippocampus": 3, "prostate": 5, "pancreas": 5}  # max(config.py:67's per-axis counts)


def count(parameters) -> int:
    return sum(p.numel() for p in parameters)


# ----- separable convolutions ---------------------------------------------------------------------
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_bare_separable_convolution_is_a_full_convolution_with_a_factorised_kernel(spatial_dims):
    torch.manual_seed(0)
    separable = SeparableConv(5, 7, spatial_dims)
    x = torch.randn(2, 5, *[9] * spatial_dims)
    full = separable.full_conv()
    torch.testing.assert_close(full(x), separable(x), rtol=1e-5, atol=1e-5)
    point = separable.pointwise.weight.reshape(7, 5)
    # W[o, i] = P[o, i] * D[i]: the kernels that read input channel i are all multiples of one kernel D[i].
    assert torch.allclose(full.weight[3, 2], point[3, 2] * separable.depthwise.weight[2, 0])
    assert torch.linalg.matrix_rank(full.weight[:, 2].reshape(7, -1)) == 1
    assert torch.linalg.matrix_rank(nn.Conv2d(5, 7, 3).weight[:, 2].reshape(7, -1)) > 1  # a full kernel is not


@pytest.mark.parametrize("c_in, c_out", [(1, 4), (16, 16), (32, 64)])
def test_parameter_counts_of_depthwise_pointwise_and_full(c_in, c_out):
    assert count(depthwise_conv(c_in, 3).parameters()) == 27 * c_in + c_in
    assert count(pointwise_conv(c_in, c_out, 3).parameters()) == c_in * c_out + c_out
    assert count(nn.Conv3d(c_in, c_out, 3).parameters()) == 27 * c_in * c_out + c_out


def test_the_adapter_unit_is_not_a_linear_map_because_of_the_norm_between():
    torch.manual_seed(0)
    unit = DomainConv(4, 6, ["a"], spatial_dims=3)
    bare = SeparableConv(4, 6, 3)
    bare.depthwise.load_state_dict(unit.adapters["a"][0].state_dict())
    bare.pointwise.load_state_dict(unit.pointwise.state_dict())
    x = torch.randn(1, 4, 8, 8, 8)
    # The unit's norm after the pointwise step is applied to both: only the norm and LeakyReLU between differ.
    assert not torch.allclose(unit(x, "a"), unit.norms["a"](bare(x)), atol=1e-3)
    unit.adapters["a"][1], unit.adapters["a"][2] = nn.Identity(), nn.Identity()
    torch.testing.assert_close(unit(x, "a"), unit.norms["a"](bare(x)))


# ----- the authors' configuration ---------------------------------------------------------------
def test_the_preset_has_the_parameters_of_the_authors_universal_model():
    model = U2Net.preset("huang2019")
    assert count(model.parameters()) == OFFICIAL_UNIVERSAL
    assert count(model.shared_parameters()) == 5_853_840
    per_domain = {name: count(model.domain_parameters(name)) for name in model.domains}
    assert per_domain == {"heart": 144_590, "liver": 144_590, "hippocampus": 144_709, "prostate": 145_141,
                          "pancreas": 144_590}
    assert count(model.shared_parameters()) + sum(per_domain.values()) == OFFICIAL_UNIVERSAL


@pytest.mark.parametrize("name", sorted(OFFICIAL_INDEPENDENT))
def test_the_independent_models_have_the_parameters_of_the_authors(name):
    preset = U2Net.preset("huang2019")
    model = U2Net(preset.domain_in_channels[name], preset.domains[name], width=16, depth=POOLINGS[name],
                  separable=False)
    assert count(model.parameters()) == OFFICIAL_INDEPENDENT[name]


def test_the_universal_model_is_about_five_percent_of_five_independent_models():
    ratio = OFFICIAL_UNIVERSAL / sum(OFFICIAL_INDEPENDENT.values())
    assert round(100 * ratio, 2) == 4.89


# ----- domains --------------------------------------------------------------------------------------
def small(**kwargs) -> U2Net:
    torch.manual_seed(0)
    return U2Net(width=4, depth=2, domains={"ct": 2, "mr": 3}, domain_in_channels={"mr": 2}, **kwargs)


def test_each_domain_has_its_own_input_channels_and_classes():
    model = small()
    assert model(torch.randn(1, 1, 8, 8, 8), domain="ct").shape == (1, 2, 8, 8, 8)
    assert model(torch.randn(1, 2, 8, 8, 8), domain="mr").shape == (1, 3, 8, 8, 8)
    view = model.for_domain("mr")
    assert (view.in_channels, view.out_channels) == (2, 3)
    with pytest.raises(ValueError, match=r"in_channels=2.*got 1 channels"):
        model(torch.randn(1, 1, 8, 8, 8), domain="mr")


def test_bad_domains_are_refused_with_the_known_ones():
    model = small()
    x = torch.randn(2, 1, 8, 8, 8)
    with pytest.raises(ValueError, match=r"no domain 'pet'; known domains: \['ct', 'mr'\]"):
        model(x, domain="pet")
    with pytest.raises(ValueError, match=r"one domain per batch; this batch mixes \['ct', 'mr'\]"):
        model(x, domain=["ct", "mr"])
    with pytest.raises(ValueError, match="serves several domains"):
        model(x)
    with pytest.raises(ValueError, match=r"no domain 'pet'"):
        model(x, domain="ct", adapters="pet")
    with pytest.raises(ValueError, match="domain_in_channels names domains the model does not have"):
        U2Net(domains={"ct": 2}, domain_in_channels={"pet": 1})
    with pytest.raises(ValueError, match="single-domain model"):
        U2Net(width=4, depth=2)(torch.randn(1, 1, 8, 8, 8), domain="ct")


def test_shared_and_domain_parameters_split_the_model():
    model = small()
    shared = {id(p) for p in model.shared_parameters()}
    ct, mr = ({id(p) for p in model.domain_parameters(name)} for name in ("ct", "mr"))
    assert not (shared & ct) and not (shared & mr) and not (ct & mr)
    assert shared | ct | mr == {id(p) for p in model.parameters()}
    # Shared: the pointwise convolutions of the units and the strided convolutions, nothing else.
    assert all(p.dim() == 5 and (p.shape[2:] == (1, 1, 1) or p.shape[2:] == (3, 3, 3)) or p.dim() == 1
               for p in model.shared_parameters())


def test_training_only_a_new_domain_leaves_everything_else_unchanged():
    model = small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = model.train_only("mr")
    assert trainable == count(model.domain_parameters("mr"))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 2, 8, 8, 8), domain="mr").square().mean().backward()
    optimizer.step()
    own = {id(p) for p in model.domain_parameters("mr")}
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(id(dict(model.named_parameters())[name]) in own for name in changed)


def test_another_domains_adapters_change_the_output():
    model = small()
    x = torch.randn(1, 1, 8, 8, 8)
    for unit in model.modules():  # make the two domains' adapters differ
        if isinstance(unit, DomainConv) and unit.separable:
            nn.init.normal_(unit.adapters["mr"][0].weight)
    assert torch.equal(model(x, domain="ct", adapters="ct"), model(x, domain="ct"))
    assert not torch.allclose(model(x, domain="ct", adapters="mr"), model(x, domain="ct"))


def test_the_padding_before_a_strided_convolution_has_a_receptive_field_rule():
    (spec,) = layer_specs([nn.ZeroPad3d((0, 1, 0, 1, 0, 1))])
    assert (spec.kind, spec.padding, spec.pad_end) == ("pad", 0, 1)
    with pytest.raises(ValueError, match="pads its axes differently"):
        layer_specs([nn.ZeroPad3d((0, 1, 1, 1, 0, 1))])


def test_sizes_need_two_voxels_at_the_coarsest_level():
    model = U2Net(width=4, depth=2)
    assert model.valid_sizes(1, 20) == [8, 12, 16]
    with pytest.raises(ValueError, match="at least 8"):
        model(torch.randn(1, 1, 4, 4, 4))


# ----- round-robin batches ---------------------------------------------------------------------------
def test_round_robin_takes_the_domains_in_turn_and_resumes():
    rng = np.random.default_rng(0)
    samplers = {name: PatchSampler(rng.standard_normal((2, 8, 8, 8)).astype(np.float32),
                                   rng.integers(0, 2, (2, 8, 8, 8)), patch_size=4, batch_size=2, augment=False, seed=1)
                for name in ("a", "b", "c")}
    stream = DomainRoundRobin(samplers)
    batches = [next(stream) for _ in range(4)]
    assert [b["domain"] for b in batches] == [["a", "a"], ["b", "b"], ["c", "c"], ["a", "a"]]
    state = stream.state_dict()
    following = next(stream)
    stream.load_state_dict(state)
    again = next(stream)
    assert again["domain"] == following["domain"] and torch.equal(again["image"], following["image"])
    with pytest.raises(ValueError, match="at least one domain"):
        DomainRoundRobin({})
