"""The layer table: torchinfo's numbers, our labels, no repeated container rows."""

import pytest

from unet_lessons.models import build_model
from unet_lessons.models.unetpp import UNetPlusPlus
from unet_lessons.summary import model_summary, readable_count
from unet_lessons.utils import count_parameters


def test_readable_count():
    assert readable_count(1.82e9, "multiply-adds") == "1.82 G multiply-adds"
    assert readable_count(132.9e6, "multiply-adds") == "132.90 M multiply-adds"
    assert readable_count(12, "multiply-adds") == "12 multiply-adds"


@pytest.mark.parametrize("name, spatial_dims, size", [("unet", 2, 32), ("unet", 3, 16), ("vnet", 3, 16),
                                                      ("unetpp", 2, 32), ("fcn", 2, 64)])
def test_summary_of_every_model(name, spatial_dims, size):
    model = build_model(name, in_channels=1, out_channels=2, spatial_dims=spatial_dims, width=4)
    summary = model_summary(model, (1, 1) + (size,) * spatial_dims)
    text = str(summary)
    assert summary.total_params == count_parameters(model, trainable_only=False)
    assert "Units." not in text and "(recursive)" not in text and "multiply-adds" in text
    names = [row[0].strip() for row in summary.rows]
    assert len(names) == len(set(names)) and names


def test_unetpp_lists_every_node_once_at_depth_one():
    summary = model_summary(UNetPlusPlus(1, 1, features=(4, 8, 16)), (1, 1, 32, 32), depth=1)
    nodes = [row[0] for row in summary.rows if row[0].startswith("nodes.")]
    assert sorted(nodes) == sorted(f"nodes.x_{i}_{j}" for i in range(3) for j in range(3 - i))
    # Depth 1 lists no part of a node.
    assert all(row[0].count(".") <= 1 and not row[0].startswith(" ") for row in summary.rows)
