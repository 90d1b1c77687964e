import numpy as np
import pytest
import torch

from unet_lessons.data.sparse import IGNORE_INDEX, sparsify_labels


def _label(shape=(12, 10, 8)):
    return np.random.default_rng(0).integers(0, 3, shape)


def test_only_the_chosen_slices_keep_their_labels():
    label = _label()
    sparse = sparsify_labels(label, (2, 0, 1), seed=3)
    kept = sparse != IGNORE_INDEX
    np.testing.assert_array_equal(sparse[kept], label[kept])
    # Two full D-slices and one full W-slice are annotated, nothing along H.
    d_slices = [d for d in range(12) if kept[d].all()]
    w_slices = [w for w in range(8) if kept[:, :, w].all()]
    assert len(d_slices) == 2 and len(w_slices) == 1
    assert not any(kept[:, h].all() for h in range(10))
    assert kept.sum() == 2 * 10 * 8 + 12 * 10 - 2 * 10  # the W-slice crosses each D-slice in one row


def test_slices_are_spread_over_the_axis_and_depend_on_the_seed():
    label = _label((40, 4, 4))
    kept = [np.flatnonzero((sparsify_labels(label, (4, 0, 0), seed=s) != IGNORE_INDEX).all(axis=(1, 2)))
            for s in (0, 1, 2)]
    for picks in kept:
        assert len(picks) == 4 and [p // 10 for p in picks] == [0, 1, 2, 3]  # one per quarter
    assert any(not np.array_equal(kept[0], other) for other in kept[1:])
    np.testing.assert_array_equal(sparsify_labels(label, 4, seed=1), sparsify_labels(label, 4, seed=1))


def test_batches_and_tensors_round_trip():
    label = torch.from_numpy(_label((2, 6, 6, 6)))
    sparse = sparsify_labels(label, 1)
    assert isinstance(sparse, torch.Tensor) and sparse.shape == label.shape and sparse.dtype == label.dtype
    # Each volume gets its own positions (seed + n) but the same count.
    assert [(s != IGNORE_INDEX).sum().item() for s in sparse] == [6 * 6 * 3 - 6 * 3 + 1] * 2


def test_cross_entropy_ignores_unlabelled_voxels_exactly():
    torch.manual_seed(0)
    logits, label = torch.randn(1, 3, 6, 6, 6), torch.from_numpy(_label((1, 6, 6, 6)))
    sparse = sparsify_labels(label, (1, 1, 0))
    kept = sparse != IGNORE_INDEX
    loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)(logits, sparse)
    manual = torch.nn.functional.cross_entropy(logits.movedim(1, -1)[kept], label[kept])
    torch.testing.assert_close(loss, manual)


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.zeros((4, 4, 4), dtype=np.float32)])
def test_refuses_what_is_not_a_3d_class_map(bad):
    with pytest.raises(ValueError, match="integer"):
        sparsify_labels(bad, 1)


def test_refuses_more_slices_than_the_axis_has():
    with pytest.raises(ValueError, match="slices_per_axis"):
        sparsify_labels(_label((4, 4, 4)), (5, 0, 0))
