"""The exercise solutions in notebooks/solutions/ must be right, not just run."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))

from solutions import lesson02  # noqa: E402

from unet_lessons.models import UNet  # noqa: E402
from unet_lessons.viz import layer_specs, textbook_receptive_field  # noqa: E402


def test_lesson02_valid_sizes():
    expected = UNet(1, 2, depth=3, padding="valid").valid_sizes(60, 400)
    assert lesson02.valid_sizes_depth3(60, 400) == expected and expected


def test_lesson02_textbook_field():
    specs = layer_specs(UNet(1, 2, depth=3, padding="valid").deepest_path())
    assert lesson02.textbook_field_depth3() == textbook_receptive_field(specs)[-1]["r"]


def test_lesson02_weighted_cross_entropy():
    assert lesson02.check_weighted_cross_entropy(0) and lesson02.check_weighted_cross_entropy(1)
    # A uniform weight of one is plain cross-entropy.
    logits, target = torch.randn(1, 2, 8, 8), torch.randint(0, 2, (1, 8, 8))
    torch.testing.assert_close(lesson02.pixel_weighted_cross_entropy(logits, target, torch.ones(1, 8, 8)),
                               torch.nn.functional.cross_entropy(logits, target))


def test_lesson02_dice_iou():
    g = torch.Generator().manual_seed(0)
    prediction, target = torch.randint(0, 3, (2, 32, 32), generator=g), torch.randint(0, 3, (2, 32, 32), generator=g)
    assert lesson02.check_dice_iou(prediction, target, 3)


from solutions import lesson01  # noqa: E402

from unet_lessons.models import FCN  # noqa: E402
from unet_lessons.upsampling import conv_transpose_output_size  # noqa: E402


def test_lesson01_exact_x4():
    settings = lesson01.exact_x4_settings()
    assert settings == [(4, 0), (6, 1), (8, 2)]
    assert all(conv_transpose_output_size(n, k, 4, p) == 4 * n for k, p in settings for n in (1, 5, 17))


def test_lesson01_receptive_fields():
    assert lesson01.vgg_receptive_fields() == {"pool3": 44, "pool4": 100, "pool5": 212, "fc7": 404}
    assert lesson01.vgg_receptive_fields((2, 2, 4, 4, 4)) == {"pool3": 52, "pool4": 124, "pool5": 268, "fc7": 460}


def test_lesson01_parameter_count():
    model = FCN(21, variant="32s").to("meta")
    assert lesson01.count_fcn32s_parameters() == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_lesson01_bilinear_x3():
    assert lesson01.check_bilinear_x3(0) and lesson01.check_bilinear_x3(1)


from solutions import lesson03  # noqa: E402

from unet_lessons.data import IGNORE_INDEX, sparsify_labels  # noqa: E402


def test_lesson03_paper_count_by_hand():
    model = UNet.preset("cicek2016", norm=None)
    assert lesson03.paper_parameter_count() == sum(p.numel() for p in model.parameters()) == 19_069_955


def test_lesson03_valid_cubic_sides():
    model = UNet.preset("cicek2016")
    expected = {s: model.output_size(s) for s in model.valid_sizes(60, 300)}
    assert lesson03.valid_cubic_sides(60, 300) == expected and expected[132] == 44


def test_lesson03_conv_outputs_are_part_of_the_activations():
    model = UNet(1, 3, spatial_dims=3, features=(4, 8), channel_plan="unet3d")
    share, total = lesson03.conv_output_share(model, 16)
    # conv outputs alone: 4+8 channels at 16³ (enc0), 4+8 at 8³ (bottleneck is one level down), ...
    assert 0 < share < 1 and total > 0


def test_lesson03_labelled_fraction():
    labels = torch.zeros(1, 20, 20, 20, dtype=torch.long)
    for k in (1, 2, 4):
        measured = float((sparsify_labels(labels, k) != IGNORE_INDEX).double().mean())
        assert abs(lesson03.labelled_fraction(k, 20) - measured) < 1e-9


from solutions import lesson04  # noqa: E402

from unet_lessons.models import VNet  # noqa: E402
from unet_lessons.utils import count_parameters  # noqa: E402
from unet_lessons.viz import stage_receptive_fields  # noqa: E402


def test_lesson04_table1_by_hand():
    model = VNet.preset("milletari2016", base_features=1)
    expected = [int(r) for r in stage_receptive_fields(model, transpose_rule="paper").values()][:9]
    assert lesson04.table1_by_hand() == expected == [5, 22, 72, 172, 372, 476, 528, 546, 551]


def test_lesson04_parameters_by_hand():
    for width in (2, 4, 16):
        assert lesson04.vnet_parameters(width) == count_parameters(VNet.preset("milletari2016", base_features=width))
    caffe_depths = dict(encoder_depths=(1, 1, 2, 3, 3), decoder_depths=(3, 2, 1, 1))
    assert lesson04.vnet_parameters(4, **caffe_depths) == count_parameters(VNet(base_features=4, **caffe_depths))


def test_lesson04_squared_versus_plain():
    assert all(lesson04.squared_versus_plain(seed) for seed in range(3))

from solutions import lesson05  # noqa: E402

from unet_lessons.models import UNetPlusPlus  # noqa: E402
from unet_lessons.viz import layer_specs, textbook_receptive_field  # noqa: E402


def test_lesson05_parameters_by_hand():
    assert lesson05.unetpp_parameters() == count_parameters(UNetPlusPlus(1, 1)) == 9_041_601
    for features, supervised in [((8, 16, 32, 64, 128), True), ((3, 5, 7), False)]:
        model = UNetPlusPlus(1, 2, features=features, deep_supervision=supervised)
        assert lesson05.unetpp_parameters(features, 1, 2, supervised) == count_parameters(model)


def test_lesson05_head_receptive_fields():
    model = UNetPlusPlus(1, 1, features=(2, 2, 2, 2, 2), deep_supervision=True)
    measured = [textbook_receptive_field(layer_specs(model.deepest_path(k)))[-1]["r"] for k in range(1, 5)]
    assert lesson05.head_receptive_fields(4) == measured


def test_lesson05_cka_invariances():
    for seed in range(3):
        assert all(lesson05.cka_invariances(seed).values())


def test_lesson02_training_loop_by_hand_equals_fit():
    from unet_lessons.exercises import check_exercise

    assert check_exercise("lesson02.training_loop", lesson02.train_steps_by_hand)

    from test_exercises import _loop_without_zero_grad  # gradients pile up: steps 0 and 1 right, later ones wrong

    reply = check_exercise("lesson02.training_loop", _loop_without_zero_grad)
    assert not reply and "items [2, 3, 4]" in reply.message and "zero_grad" in reply.message  # steps 0, 1 right
    assert " at 0x" not in reply.message  # a function is named, not shown with its memory address


def test_lesson02_iou_from_dice():
    assert lesson02.check_dice_iou(torch.tensor([[0, 1, 1], [1, 0, 0]]), torch.tensor([[0, 1, 0], [1, 1, 0]]))


def test_lesson05_linear_cka_equals_the_package():
    from unet_lessons.similarity import linear_cka

    x, y = torch.randn(200, 5, dtype=torch.float64), torch.randn(200, 7, dtype=torch.float64)
    assert abs(lesson05.linear_cka(x, y) - linear_cka(x, y)) < 1e-9


def test_every_question_has_a_written_answer():
    from solutions import lesson00, lesson06, lesson07, lesson08, lesson09

    from unet_lessons.exercises import exercise_names

    # Every checked exercise has a written answer; some lessons also answer questions that have no checker.
    questions_without_a_checker = {
        (lesson00, "lesson00"): {"seed_means_only", "inconclusive_is_honest"},
        (lesson01, "lesson01"): {"fcn32s_collapse", "ceiling_cross_entropy"},  # is FCN-32s broken; CE vs IoU
        (lesson02, "lesson02"): {"skip_zero_or_mean", "consecutive_folds"},  # knock-outs; why blocks of slices
        (lesson03, "lesson03"): {"matching_2d_3d"},                      # what the 2D network is matched in
        (lesson04, "lesson04"): set(),
        (lesson05, "lesson05"): {"semantic_gap_wiring", "l3_or_l4"},     # the wiring's share of the CKA; L3 or L4
        (lesson06, "lesson06"): set(),
        (lesson07, "lesson07"): {"why_vae_helps"},                       # why the branch should help
        (lesson08, "lesson08"): {"baselines", "cka"},                    # which U-Net to compare with; what CKA shows
        (lesson09, "lesson09"): {"why_adaptation_lost", "one_percent"},  # the adaptation's verdict; what 1 % counts
    }
    for (module, lesson), questions in questions_without_a_checker.items():
        assert sorted(f"{lesson}.{key}" for key in set(module.ANSWERS) - questions) == exercise_names(lesson), lesson
        assert questions <= set(module.ANSWERS), lesson
        assert all(len(answer) > 60 for answer in module.ANSWERS.values()), lesson


def test_lesson00_references_equal_the_package():
    from solutions import lesson00

    from unet_lessons.stats import CrossedInterval, crossed_interval, item_counts, simulate_differences, verdict

    d = simulate_differences(np.random.default_rng(0), seeds=5, items=12, mean=0.01, seed_sd=0.02, item_sd=0.03,
                             residual_sd=0.01)
    assert abs(lesson00.crossed_standard_error(d) - crossed_interval(d).standard_error) < 1e-12
    fixed = np.tile(np.r_[np.ones(4), -np.ones(1), np.zeros(7)], (3, 1))
    assert abs(lesson00.sign_test(4, 1) - item_counts(fixed).p_value) < 1e-12
    for low, high in [(0.01, 0.03), (-0.03, -0.01), (-0.01, 0.01), (-0.01, 0.05), (0.001, 0.004)]:
        interval = CrossedInterval((low + high) / 2, low, high, 5, 12, 0.95, 1, 10.0, 0.01, {})
        assert lesson00.verdict_from_interval(low, high, 0.02) == verdict(interval, margin=0.02)


from solutions import lesson06  # noqa: E402


def test_lesson06_references_equal_the_package():
    from unet_lessons.inference import sliding_window_probabilities
    from unet_lessons.metrics import dice_per_region
    from unet_lessons.models import NoNewNet
    from unet_lessons.targets import labels_to_regions, remove_small_region

    label = torch.randint(0, 4, (2, 8, 8, 8), generator=torch.Generator().manual_seed(0))
    regions = labels_to_regions(label).bool()
    assert torch.equal(torch.stack([lesson06.labels_to_regions_by_hand(x) for x in label]), regions)
    prediction = labels_to_regions(torch.randint(0, 4, (2, 8, 8, 8))).bool()
    package = dice_per_region(prediction, regions, per_sample=True)
    ours = [[lesson06.brats_dice(prediction[b, r], regions[b, r]) for r in range(3)] for b in range(2)]
    assert torch.allclose(package, torch.tensor(ours, dtype=package.dtype))
    assert torch.equal(lesson06.remove_small_enhancing(regions, 60), remove_small_region(regions, 2, 60))
    model = NoNewNet(4, 3, width=2, depth=1).eval()
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        mirrored = lesson06.mirrored_probabilities(model, x)
    torch.testing.assert_close(sliding_window_probabilities(model, x, roi_size=8, mirror_axes=(0, 1, 2)), mirrored,
                               rtol=1e-5, atol=1e-6)


def test_lesson07_references_equal_the_package():
    from solutions import lesson07

    from unet_lessons.models import MyronenkoNet
    from unet_lessons.models.myronenko import kl_divergence, vae_losses

    generator = torch.Generator().manual_seed(0)
    mean, std = torch.randn(2, 8, generator=generator), torch.rand(2, 8, generator=generator) + 0.1
    torch.testing.assert_close(lesson07.kl_divergence(mean, std), kl_divergence(mean, std))
    image = torch.randn(2, 4, 8, 8, 8, generator=generator)
    reconstruction = image + 0.3 * torch.randn(image.shape, generator=generator)
    l2, kl = vae_losses(image, reconstruction, mean, std)
    torch.testing.assert_close(lesson07.vae_loss(image, reconstruction, mean, std), 0.1 * l2 + 0.1 * kl)
    for size in ((160, 192, 128), (32, 32, 32), (8, 24, 8)):
        with torch.device("meta"):
            model = MyronenkoNet(4, 3, width=4, vae_input_size=size)
        assert lesson07.dense_inputs(size, 3, 16) == model.vae_encode.in_features
    assert lesson07.dense_inputs((160, 192, 128), 3, 16) == 15360


def test_the_checker_still_says_what_the_stored_lessons_show():
    """The lessons store the checker's replies (stubs not attempted, worked solutions correct): they must not move."""
    import importlib
    import json
    import re

    from unet_lessons.exercises import check_exercise

    def stub(**_):
        raise NotImplementedError

    call = re.compile(r"check_exercise\(\"([^\"]+)\",\s*(solutions\.)?(\w+)\)")
    compared = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            calls = call.findall("".join(cell["source"])) if cell["cell_type"] == "code" else []
            if not calls:
                continue
            stored = ["".join(output["data"]["text/plain"]) for output in cell.get("outputs", [])
                      if "text/plain" in output.get("data", {})]
            today = [repr(check_exercise(name, getattr(importlib.import_module(f"solutions.{name.split('.')[0]}"),
                                                       function) if from_solutions else stub))
                     for name, from_solutions, function in calls]
            assert stored == today, path.name
            compared += len(today)
    assert compared >= 20


def test_lesson09_references_equal_the_package():
    from solutions import lesson09

    from unet_lessons.blocks import DomainConv, SeparableConv

    torch.manual_seed(0)
    separable = SeparableConv(4, 6, 3)
    counts = lesson09.separable_parameters(4, 6, 3, 3)
    assert counts == (sum(p.numel() for p in torch.nn.Conv3d(4, 6, 3).parameters()),
                      sum(p.numel() for p in separable.parameters()))
    assert torch.equal(lesson09.full_kernel(separable.depthwise.weight, separable.pointwise.weight),
                       separable.full_conv().weight)
    unit = DomainConv(4, 6, ["a"], spatial_dims=3)
    x = torch.randn(1, 4, 6, 6, 6)
    adapter = unit.adapters["a"]
    with torch.no_grad():
        assert torch.allclose(lesson09.adapter_unit(x, adapter[0], adapter[1], unit.pointwise, unit.norms["a"]),
                              unit(x, "a"), atol=1e-6)


def test_lesson08_references_equal_the_package():
    from solutions import lesson08

    from unet_lessons.blocks import ConvNormAct, MultiResBlock, ResPathUnit, multires_widths
    from unet_lessons.models import keras_counts

    for in_channels, u in [(1, 16), (3, 32), (105, 64), (77, 150)]:
        counts = keras_counts(MultiResBlock(in_channels, u))
        assert lesson08.block_counts(in_channels, u) == {k: counts[k] for k in ("trainable", "non_trainable")}
    assert all(lesson08.branch_widths(u, 1.67) == multires_widths(u) for u in range(8, 600))

    def weights(in_channels, widths):
        chain = [torch.nn.Conv2d(i, o, 3, bias=False) for i, o in zip((in_channels, *widths[:2]), widths)]
        parallel = [torch.nn.Conv2d(in_channels, o, k, bias=False) for o, k in zip(widths, (3, 5, 7))]
        return sum(c.weight.numel() for c in chain), sum(c.weight.numel() for c in parallel)

    for widths in [(8, 17, 26), (4, 8, 13), (1, 1, 1), (142, 284, 427)]:
        n = lesson08.break_even_channels(widths)
        chain, parallel = weights(n, widths)
        assert chain < parallel and (n == 1 or weights(n - 1, widths)[0] >= weights(n - 1, widths)[1])
    unit = ResPathUnit(3, 4).eval()
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(lesson08.res_path_unit(x, unit.conv, unit.shortcut, unit.norm), unit(x))
    assert isinstance(unit.conv, ConvNormAct)
