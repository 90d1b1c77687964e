import pytest
import torch

from unet_lessons.models import UNet, UNetPlusPlus
from unet_lessons.similarity import as_feature_matrix, concatenated_pairs, linear_cka


def _hsic_cka(x, y):
    """CKA through centred Gram matrices (Kornblith et al. 2019, eq. 3): an independent reference."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    hsic = lambda a, b: (a * b).sum()  # noqa: E731  (trace(A B) for symmetric A, B)
    return float(hsic(k, l) / (hsic(k, k) * hsic(l, l)).sqrt())


def test_equals_the_gram_matrix_definition():
    torch.manual_seed(0)
    x = torch.randn(60, 5, dtype=torch.float64)
    y = x @ torch.randn(5, 7, dtype=torch.float64) + 0.5 * torch.randn(60, 7, dtype=torch.float64)
    assert linear_cka(x, y) == pytest.approx(_hsic_cka(x, y), rel=1e-10)


def test_invariances():
    torch.manual_seed(1)
    x = torch.randn(200, 6, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ rotation + 2.0) == pytest.approx(1.0)  # rotation, scale, offset
    stretch = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert linear_cka(x, x @ stretch) < 0.9  # not invariant to an arbitrary linear map
    assert linear_cka(x, torch.randn(200, 6, dtype=torch.float64)) < 0.15  # unrelated


def test_feature_maps_become_position_by_channel_matrices():
    maps = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    matrix = as_feature_matrix(maps)
    assert matrix.shape == (40, 3)
    assert torch.equal(matrix[7], maps[0, :, 1, 2])
    assert linear_cka(maps, maps * 2) == pytest.approx(1.0)


def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(torch.randn(10, 2), torch.randn(11, 2))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(torch.ones(10, 2), torch.randn(10, 2))
    with pytest.raises(ValueError, match="feature maps"):
        as_feature_matrix(torch.randn(3, 4))
    with pytest.raises(TypeError, match=r"skip_pairs\(x\).*Conv2d has none"):
        concatenated_pairs(torch.nn.Conv2d(1, 1, 1), torch.randn(1, 1, 8, 8))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_concatenated_pairs_of_both_networks(spatial_dims):
    torch.manual_seed(0)
    x = torch.randn(1, 1, *[16] * spatial_dims)
    unet = UNet(1, 2, spatial_dims=spatial_dims, features=(2, 4, 8))
    nested = UNetPlusPlus(1, 2, spatial_dims=spatial_dims, features=(2, 4, 8))
    for model in (unet, nested):
        pairs = concatenated_pairs(model, x)
        assert list(pairs) == ["level 0", "level 1"]
        for level, (skip, up) in enumerate(pairs.values()):
            assert skip.shape == (1, 2 * 2**level, *[16 // 2**level] * spatial_dims)
            assert up.shape == skip.shape
    # U-Net: the skip is the encoder map itself; UNet++ level 0: the nested node X^{0,1}.
    feats = nested.forward_features(x)
    assert torch.equal(concatenated_pairs(nested, x)["level 0"][0], feats["x_0_1"])
    assert torch.equal(concatenated_pairs(nested, x)["level 1"][0], feats["x_1_0"])
    unet_feats, unet_pairs = unet.forward_features(x), concatenated_pairs(unet, x)
    assert torch.equal(unet_pairs["level 0"][0], unet_feats["enc0"])
    assert torch.equal(unet_pairs["level 1"][0], unet_feats["enc1"])


def test_concatenated_pairs_of_the_other_networks():
    from unet_lessons.models import FCN, VNet

    torch.manual_seed(0)
    vnet = VNet(1, 2, spatial_dims=2, width=2, encoder_depths=(1, 1, 1), decoder_depths=(1, 1))
    x = torch.randn(1, 1, 16, 16)
    pairs = concatenated_pairs(vnet, x)
    assert list(pairs) == ["level 0", "level 1"]
    assert torch.equal(pairs["level 0"][0], vnet.forward_features(x)["enc0"])
    assert pairs["level 1"][1].shape == (1, 4, 8, 8)  # the up-conv output joined at level 1
    fcn = FCN(3, variant="8s", in_channels=1, width=2, fc_width=8)
    feats = fcn.forward_features(torch.randn(1, 1, 64, 64))
    torch.manual_seed(0)
    pairs = concatenated_pairs(fcn, torch.randn(1, 1, 64, 64))
    assert list(pairs) == ["level 3", "level 4"]  # FCN adds scores at pool3 and pool4
    assert pairs["level 4"][0].shape == feats["score_pool4"].shape == pairs["level 4"][1].shape
    assert concatenated_pairs(FCN(3, in_channels=1, width=2, fc_width=8), torch.randn(1, 1, 32, 32)) == {}
