import pytest
import torch

from unet_lessons.inference import predict_tiled, valid_margin
from unet_lessons.models import UNet


def test_overlap_tiles_match_one_forward_pass_in_the_interior():
    model = UNet(1, 2, base_features=4, depth=3, norm=None).eval()
    image = torch.randn(1, 256, 256)
    full = model(image[None])[0]
    seams = (predict_tiled(model, image, 64, margin=0, pad_mode="constant") - full).abs()
    overlap = (predict_tiled(model, image, 64, margin=48, pad_mode="constant") - full).abs()
    inner = (slice(None), slice(64, 192), slice(64, 192))
    assert overlap[inner].max() < 1e-5
    assert seams[inner].max() > 1e-3  # without context the tile edges differ


def test_valid_model_tiles_with_its_own_margin():
    model = UNet(1, 2, base_features=2, padding="valid", norm=None).eval()
    assert valid_margin(model, 388) == 92
    out = predict_tiled(model, torch.randn(1, 100, 120), 36)
    assert out.shape == (2, 100, 120)
    with pytest.raises(ValueError, match="36, 52"):
        valid_margin(model, 37)
    with pytest.raises(ValueError, match="margin"):
        predict_tiled(model, torch.randn(1, 100, 120), 36, margin=4)


def test_tiles_in_3d():
    model = UNet(1, 3, spatial_dims=3, base_features=2, depth=2).eval()
    out = predict_tiled(model, torch.randn(1, 20, 24, 16), 8, margin=4)
    assert out.shape == (3, 20, 24, 16)


def test_mirror_padding_matches_one_forward_pass_in_the_interior():
    model = UNet(1, 2, base_features=4, depth=3, norm=None).eval()
    image = torch.randn(1, 128, 128)
    full = model(image[None])[0]
    tiled = predict_tiled(model, image, 32, margin=48, pad_mode="reflect")
    assert (tiled - full).abs()[:, 48:80, 48:80].max() < 1e-5


def test_batch_or_wrong_dimensions_are_refused_not_hung():
    model = UNet(1, 2, base_features=2, depth=2).eval()
    with pytest.raises(ValueError, match=r"one image of shape \(C, H, W\).*batch\[0\]"):
        predict_tiled(model, torch.randn(1, 1, 64, 64), 32)
    with pytest.raises(ValueError, match="pad_mode='constant'"):
        predict_tiled(UNet(1, 2, spatial_dims=3, base_features=2, depth=1).eval(), torch.randn(1, 1, 8, 8), 4, margin=2)


def test_predict_slicewise_equals_a_per_slice_loop_on_every_axis():
    from unet_lessons.inference import predict_slicewise
    torch.manual_seed(0)
    model = UNet(2, 3, base_features=2, depth=2, norm=None).eval()
    volume = torch.randn(2, 5, 8, 12)
    for axis in range(3):
        out = predict_slicewise(model, volume, axis=axis, batch_size=3)
        assert out.shape == (3, 5, 8, 12)
        for i in range(volume.shape[axis + 1]):
            expected = model(volume.select(axis + 1, i)[None])[0]
            torch.testing.assert_close(out.select(axis + 1, i), expected)


def test_predict_slicewise_refuses_3d_models_and_batches():
    from unet_lessons.inference import predict_slicewise
    with pytest.raises(ValueError, match="2D model"):
        predict_slicewise(UNet(1, 2, spatial_dims=3, base_features=2, depth=1), torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="per volume"):
        predict_slicewise(UNet(1, 2, base_features=2, depth=1), torch.randn(2, 1, 4, 4, 4))


def test_dict_outputs_are_read_through_the_contract():
    from unet_lessons.models.base import SegmentationModel

    class DictUNet(SegmentationModel):
        """A contract model whose forward returns a dict, as adapters of other libraries do."""

        def __init__(self) -> None:
            super().__init__()
            self.net = UNet(1, 2, base_features=2, depth=2).eval()
            self.spatial_dims, self.in_channels, self.out_channels, self.depth = 2, 1, 2, 2

        def output_size(self, size):
            return self.net.output_size(size)

        def forward(self, x):
            return {"logits": self.net(x), "reconstruction": x}

    model = DictUNet().eval()
    image = torch.randn(1, 20, 24)
    torch.testing.assert_close(predict_tiled(model, image, 8, margin=4), predict_tiled(model.net, image, 8, margin=4))
    from unet_lessons.inference import predict_slicewise
    assert predict_slicewise(model, torch.randn(1, 3, 8, 8)).shape == (2, 3, 8, 8)
