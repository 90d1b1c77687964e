"""Myronenko's network (``unet_lessons.models.myronenko``), against MONAI and Table 1's shapes."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence as torch_kl

from unet_lessons.memory import estimate_memory
from unet_lessons.models import MyronenkoNet, build_model, unpack_output
from unet_lessons.models.myronenko import copy_weights_from_monai, kl_divergence, myronenko_kl
from unet_lessons.train import TrainConfig, fit

PAPER_CROP = (160, 192, 128)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_segmentation_network_has_monais_parameter_count_at_the_papers_size():
    from monai.networks.nets import SegResNet

    with torch.device("meta"):
        ours = MyronenkoNet(4, 3, final_norm_act=True)
        plain = MyronenkoNet(4, 3)
        theirs = SegResNet(spatial_dims=3, init_filters=32, in_channels=4, out_channels=3)
    assert count(ours) == count(theirs)
    assert count(ours) - count(plain) == 2 * 32  # MONAI's group norm before the last convolution


def test_with_monais_weights_the_outputs_are_monais():
    from monai.networks.nets import SegResNet

    torch.manual_seed(0)
    theirs = SegResNet(spatial_dims=3, init_filters=8, in_channels=4, out_channels=3).eval()
    ours = copy_weights_from_monai(MyronenkoNet(4, 3, width=8, final_norm_act=True), theirs).eval()
    x = torch.randn(2, 4, 16, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_copying_from_a_differently_built_model_is_refused():
    from monai.networks.nets import SegResNet

    theirs = SegResNet(spatial_dims=3, init_filters=16, in_channels=4, out_channels=3)
    with pytest.raises(ValueError, match="shape.*build both with the same sizes"):
        copy_weights_from_monai(MyronenkoNet(4, 3, width=8, final_norm_act=True), theirs)


def test_the_vae_branch_has_table_1s_shapes_at_the_papers_crop():
    with torch.device("meta"):
        model = MyronenkoNet(4, 3, vae_input_size=PAPER_CROP).train()
        x = torch.empty(1, 4, *PAPER_CROP)
        feats = model.forward_features(x)
        output = model(x)
    assert tuple(feats["bottleneck"].shape) == (1, 256, 20, 24, 16)  # "256×20×24×16"
    assert model.vae_map_size == (10, 12, 8) and model.vae_encode.in_features == 16 * 10 * 12 * 8
    assert model.vae_encode.out_features == 256  # 128 means, 128 standard deviations
    assert tuple(output["reconstruction"].shape) == (1, 4, *PAPER_CROP)
    assert tuple(output["logits"].shape) == (1, 3, *PAPER_CROP)


def test_another_size_in_training_names_the_size_the_model_was_built_for():
    model = MyronenkoNet(4, 3, width=8, vae_input_size=(32, 32, 32)).train()
    with pytest.raises(ValueError, match=r"built for inputs of 32×32×32.*got 48×48×48.*model.eval\(\)"):
        model(torch.randn(1, 4, 48, 48, 48))
    model.eval()  # the VAE runs only in training: any multiple of 8 segments
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 4, 48, 40, 32)).shape) == (1, 3, 48, 40, 32)


def test_the_kl_terms():
    torch.manual_seed(0)
    mean, std = torch.randn(3, 128), torch.rand(3, 128) + 0.1
    textbook = torch_kl(Normal(mean, std), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_divergence(mean, std), textbook)
    # The paper's L_KL: (1/N) Σ (μ² + σ² − log σ² − 1), no ½, so 2·KL/N.
    torch.testing.assert_close(myronenko_kl(mean, std, 1000), (2 * textbook / 1000).mean())
    assert float(kl_divergence(torch.zeros(1, 5), torch.ones(1, 5))) == 0.0


def test_the_training_output_and_its_weighted_vae_loss():
    torch.manual_seed(0)
    model = MyronenkoNet(4, 3, width=8, vae_input_size=16, l2_weight=0.1, kl_weight=0.1).train()
    x = torch.randn(2, 4, 16, 16, 16)
    torch.manual_seed(1)
    output = model(x)
    assert set(output) == {"logits", "aux_loss", "reconstruction", "l2_loss", "kl_loss"}
    torch.testing.assert_close(output["aux_loss"], 0.1 * output["l2_loss"] + 0.1 * output["kl_loss"])
    torch.testing.assert_close(output["l2_loss"], torch.mean((output["reconstruction"] - x) ** 2).detach())
    unpacked = unpack_output(output)
    assert unpacked.aux_loss is output["aux_loss"] and "reconstruction" in unpacked.extras


def test_the_vae_loss_trains_the_encoder_and_not_the_segmentation_decoder():
    torch.manual_seed(0)
    model = MyronenkoNet(4, 3, width=8, vae_input_size=16).train()
    model(torch.randn(2, 4, 16, 16, 16))["aux_loss"].backward()
    assert model.init_conv.weight.grad.abs().sum() > 0  # the shared encoder
    assert model.vae_end.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in list(model.decoder.parameters()) + list(model.head.parameters()))


def test_reconstruct_and_decode():
    torch.manual_seed(0)
    model = MyronenkoNet(4, 3, width=8, vae_input_size=16).train()
    x = torch.randn(1, 4, 16, 16, 16)
    first, second = model.reconstruct(x), model.reconstruct(x)
    torch.testing.assert_close(first["reconstruction"], second["reconstruction"])  # from the mean: deterministic
    assert model.training  # the mode is restored
    assert tuple(model.decode(torch.randn(3, 128)).shape) == (3, 4, 16, 16, 16)
    with pytest.raises(ValueError, match="no VAE branch.*vae_input_size"):
        MyronenkoNet(4, 3, width=8).decode(torch.randn(1, 128))


def test_an_odd_endpoint_still_reconstructs_the_input_size():
    model = MyronenkoNet(2, 3, width=4, vae_input_size=(8, 24, 8)).train()  # endpoint 1×3×1 -> VAE map 1×2×1
    output = model(torch.randn(1, 2, 8, 24, 8))
    assert tuple(output["reconstruction"].shape) == (1, 2, 8, 24, 8)


def test_the_memory_estimate_counts_the_vae_branch():
    plain = estimate_memory(MyronenkoNet(4, 3, width=8), (4, 32, 32, 32))
    vae = estimate_memory(MyronenkoNet(4, 3, width=8, vae_input_size=32), (4, 32, 32, 32))
    assert vae.parameters > plain.parameters and vae.activations > 1.3 * plain.activations
    with torch.device("meta"):
        paper = MyronenkoNet(4, 3, vae_input_size=PAPER_CROP)
    estimate = estimate_memory(paper, (4, *PAPER_CROP))
    assert estimate.parameters == 4 * count(paper)
    assert estimate.total > 8 * 2**30  # many GiB at the paper's crop and batch size 1


def test_fit_adds_the_vae_loss():
    from unet_lessons.losses import RegionDiceLoss

    torch.manual_seed(0)
    model = build_model("myronenko", in_channels=4, out_channels=3, spatial_dims=3, width=8, vae_input_size=16)
    x, y = torch.randn(2, 4, 16, 16, 16), (torch.rand(2, 3, 16, 16, 16) > 0.7).float()
    y[:, 1] *= y[:, 0]
    y[:, 2] *= y[:, 1]
    history = fit(model, [(x, y)] * 3, RegionDiceLoss(nested=True), TrainConfig(steps=3, lr=1e-3, progress=False,
                                                                                collapse_check=False))
    assert len(history["loss"]) == 3 and all(math.isfinite(v) for v in history["loss"])
