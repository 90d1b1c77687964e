"""The exercise checker: every reference passes its own checker, and wrong answers fail with a hint."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_lessons.exercises import EXERCISES, check_exercise, describe, exercise_names, lesson01, lesson05, same

#: The worked solutions, where the reference is not itself what a student writes.
WORKED = {"lesson01.bilinear_x3": lesson01.fixed_upsample_x3}


def perturbed(value):
    """A plausible wrong answer of the same kind: off by one, a little off, or one item short."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):  # a verdict: another one of the list
        return "inconclusive at this budget" if value != "inconclusive at this budget" else "reproduced"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.01 + 0.01
    if isinstance(value, torch.Tensor):
        return value + 0.01
    if isinstance(value, dict):
        key = next(iter(value))
        return {**value, key: perturbed(value[key])}
    if isinstance(value, (list, tuple)):
        return type(value)(value[:-1]) if len(value) > 1 else type(value)([perturbed(value[0])])
    raise TypeError(type(value))


def test_every_lesson_before_06_has_exercises():
    for lesson in ("lesson01", "lesson02", "lesson03", "lesson04", "lesson05"):
        assert len(exercise_names(lesson)) >= 3, lesson


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_passes(name):
    result = check_exercise(name, WORKED.get(name, EXERCISES[name].reference))
    assert result and result.attempted and "correct on" in repr(result)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_wrong_answer_fails_with_a_hint_and_not_the_answer(name):
    exercise = EXERCISES[name]

    def wrong(**case):
        return perturbed(exercise.reference(**case))

    result = check_exercise(name, wrong)
    assert not result and result.attempted
    message = repr(result)
    assert "not yet right on case 1 of" in message and f"Hint: {exercise.hint}" in message
    # The expected value itself never appears (checked where it is a number or a short list of numbers).
    expected = exercise.reference(**exercise.fresh_cases()[0])
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and abs(expected) >= 10:
        assert str(expected) not in message and f"{expected:,}" not in message
    if isinstance(expected, list) and expected and isinstance(expected[0], int):
        assert str(expected) not in message


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_stub_is_not_attempted(name):
    def stub(**case):
        raise NotImplementedError

    result = check_exercise(name, stub)
    assert not result and not result.attempted and "not attempted yet" in repr(result)


def test_wrong_kind_names_both_kinds():
    result = check_exercise("lesson02.valid_sizes", lambda start, stop: None)
    assert "expected a list of" in repr(result) and "got None" in repr(result)


def test_an_error_in_the_answer_is_reported_with_its_case():
    result = check_exercise("lesson03.labelled_fraction", lambda k, side: 1 / 0)
    assert not result and "ZeroDivisionError" in repr(result) and "case 1 of 3" in repr(result)


def test_bad_calls_say_what_to_do():
    with pytest.raises(TypeError, match="without brackets"):
        check_exercise("lesson04.vnet_parameters", 42)
    with pytest.raises(KeyError, match="lesson04.vnet_parameters"):
        check_exercise("lesson04.vnet_params", lambda width: 0)


def test_cases_are_fresh_but_repeatable():
    first, second = EXERCISES["lesson02.valid_sizes"].fresh_cases(), EXERCISES["lesson02.valid_sizes"].fresh_cases()
    assert first == second and len(first) >= 2


def test_same_and_describe():
    assert same(0.1 + 0.2, 0.3) and not same(1, 2) and not same(True, 1) and same([1, (2, 3)], [1, (2, 3)])
    assert same(torch.ones(2), torch.ones(2)) and not same(torch.ones(2), torch.ones(3))
    assert not same({"a": 1}, {"a": 1, "b": 2}) and same(torch.tensor(2.0), 2.0)
    assert describe([1, 2, 3]) == "a list of 3 ints"
    assert describe(torch.zeros(2, 3)) == "a tensor of shape (2, 3), float32"
    assert describe({"pool3": 1}) == "a dict with 1 key" and describe(math.pi) == "a float"


# ----- the wrong answers students really give ---------------------------------------------------
# One hand-written mistake per exercise (not a perturbation of the reference), with a fragment of
# the reply that shows the checker saw what kind of mistake it was, where it can.

def _crossed_se_counts_not_df(differences):
    """Divides each mean square by a count (S, N, S·N) instead of its degrees of freedom."""
    d = np.asarray(differences, dtype=np.float64)
    seeds, items = d.shape
    grand = d.mean()
    ms_seed = items * ((d.mean(1) - grand) ** 2).sum() / seeds
    ms_item = seeds * ((d.mean(0) - grand) ** 2).sum() / items
    ms_residual = ((d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + grand) ** 2).sum() / (seeds * items)
    return float(math.sqrt(max(ms_seed + ms_item - ms_residual, ms_residual) / (seeds * items)))


def _sign_test_one_sided(up, down):
    """Forgets to double the tail: a one-sided p-value."""
    n = up + down
    return 1.0 if n == 0 else sum(math.comb(n, j) for j in range(min(up, down) + 1)) / 2**n


def _verdict_margin_first(low, high, margin):
    """Asks about the margin before the direction: a small but clear gain is called 'equivalent'."""
    if -margin < low and high < margin:
        return "equivalent at this budget"
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted at this budget"
    return "inconclusive at this budget"


def _exact_x4_off_by_one(max_kernel=8):
    """range(1, max_kernel) leaves out the largest kernel."""
    return [(k, p) for k in range(1, max_kernel) for p in range(k) if k - 2 * p == 4]


def _vgg_fc6_counted_as_7(convs_per_stage):
    """Adds k·j for the 7×7 fc6 instead of (k - 1)·j: fc7 comes out one jump (32 px) too large."""
    r, j, fields = 1, 1, {}
    for stage, num_convs in enumerate(convs_per_stage, start=1):
        r += num_convs * 2 * j + j
        j *= 2
        if stage >= 3:
            fields[f"pool{stage}"] = r
    fields["fc7"] = r + 7 * j
    return fields


def _fcn32s_without_biases(num_classes=21):
    total, previous = 0, 3
    for channels, num_convs in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
        for _ in range(num_convs):
            total += previous * channels * 9
            previous = channels
    return total + 512 * 49 * 4096 + 4096 * 4096 + 4096 * num_classes


def _nearest_x3(x):
    """Nearest-neighbour ×3 instead of the fixed bilinear up-convolution."""
    return F.interpolate(x, scale_factor=3, mode="nearest")


def _valid_sizes_without_the_even_check(start, stop):
    def works(n):
        for _ in range(3):
            n = (n - 4) // 2
            if n <= 0:
                return False
        n -= 4
        for _ in range(3):
            n = 2 * n - 4
        return n > 0

    return [n for n in range(start, stop) if works(n)]


def _textbook_field_without_halving(**_):
    """Forgets that each up-convolution halves the jump again on the way up."""
    r, j = 1.0, 1.0
    for _level in range(3):
        r += 4 * j + j
        j *= 2
    r += 4 * j
    for _level in range(3):
        r += 4 * j
    return r


def _weighted_ce_softmax_on_the_last_axis(logits, target, weights):
    """log_softmax over the last (width) axis instead of the class axis."""
    picked = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
    return -(weights * picked).mean()


def _weighted_ce_sum(logits, target, weights):
    """Sums over the pixels instead of averaging."""
    picked = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return -(weights * picked).sum()


def _loop_without_zero_grad(make_model, batches, loss_fn, lr):  # the gradients of every step add up
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for x, y in batches:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _iou_from_dice_inverted(dice):
    """The inverse map (Dice from IoU), 2x / (1 + x), instead of IoU from Dice."""
    return 2 * dice / (1 + dice)


def _cicek_upconvs_with_bias(in_channels=3, out_channels=3):
    """Gives the 2×2×2 up-convolutions a bias, as every other convolution has."""
    conv = lambda cin, cout, k=3: k**3 * cin * cout + cout  # noqa: E731
    encoder = conv(in_channels, 32) + conv(32, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128) + conv(128, 256)
    decoder = sum(conv(c, c, 2) + conv(c + c // 2, c // 2) + conv(c // 2, c // 2) for c in (512, 256, 128))
    return encoder + conv(256, 256) + conv(256, 512) + decoder + conv(64, out_channels, 1)


def _valid_sides_without_the_bottleneck(start, stop):
    """Forgets the bottleneck's two convolutions (4 px) between the paths."""
    sides = {}
    for side in range(start, stop):
        n, ok = side, True
        for _ in range(3):
            n -= 4
            if n <= 0 or n % 2:
                ok = False
                break
            n //= 2
        if ok:
            for _ in range(3):
                n = 2 * n - 4
            if n > 0:
                sides[side] = n
    return sides


def _conv_output_bytes_forgets_the_transposed(model, patch):
    """Hooks nn.Conv3d only: the up-convolutions (ConvTranspose3d) are not counted."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, model.in_channels, patch, patch, patch))
    for handle in handles:
        handle.remove()
    return total


def _labelled_fraction_without_overlaps(k, side):
    """Adds the three families of planes and forgets that they cross."""
    return 3 * k * side**2 / side**3


def _table1_upconv_at_the_coarse_step(encoder_depths=(1, 2, 3, 3, 3), decoder_depths=(3, 3, 2, 1)):
    r, j, fields = 1, 1, []
    for level, depth in enumerate(encoder_depths):
        if level > 0:
            r += j
            j *= 2
        r += depth * 4 * j
        fields.append(r)
    for depth in decoder_depths:
        r += j          # counted before halving j
        j //= 2
        r += depth * 4 * j
        fields.append(r)
    return fields


def _vnet_parameters_without_prelu(width=16):
    conv = lambda cin, cout, k: k**3 * cin * cout + cout  # noqa: E731
    widths = [width * 2**level for level in range(5)]
    depths, decoder = (1, 2, 3, 3, 3), (3, 3, 2, 1)
    total = conv(1, widths[0], 5) + sum(conv(widths[0], widths[0], 5) for _ in range(depths[0] - 1))
    for level in range(1, 5):
        total += conv(widths[level - 1], widths[level], 2)
        total += sum(conv(widths[level], widths[level], 5) for _ in range(depths[level]))
    below = widths[-1]
    for level, depth in zip(reversed(range(4)), decoder):
        skip = widths[level]
        total += 8 * below * skip + skip
        total += conv(2 * skip, 2 * skip, 5) * depth
        below = 2 * skip
    return total + conv(below, 2, 1)


def _vnet_dice_ignores_squared(prediction, truth, squared):
    return 2 * (prediction * truth).sum() / (prediction.sum() + truth.sum())


def _unetpp_one_head_always(features=(32, 64, 128, 256, 512), deep_supervision=False):
    """Right everywhere but the heads: one 1×1 head even under deep supervision (the rest is the reference's)."""
    return lesson05.unetpp_parameters(features, deep_supervision=False)


def _head_fields_halving_after_the_convs(depth=4):
    """Halves the jump after each up-stage's convolutions instead of before them."""
    fields = []
    for k in range(1, depth + 1):
        r, jump = 1, 1
        for level in range(k + 1):
            if level:
                r += jump
                jump *= 2
            r += 4 * jump
        for _ in range(k):
            r += 4 * jump
            jump //= 2
        fields.append(r)
    return fields


def _cka_without_centring(x, y):
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))


def _regions_core_with_edema(label):
    """The tumour core taken as classes 1 and 2 (necrosis and edema) instead of 1 and 3."""
    return torch.stack([label > 0, (label == 1) | (label == 2), label == 3])


def _brats_dice_zero_when_empty(prediction, truth):
    total = int(prediction.sum()) + int(truth.sum())
    return 0.0 if total == 0 else 2.0 * int((prediction & truth).sum()) / total


def _remove_small_counting_every_region(regions, min_voxels):
    """Counts the voxels of all three regions, not of the enhancing channel alone."""
    out = regions.clone()
    out[out.flatten(1).sum(1) < min_voxels, 2] = False
    return out


def _mirrored_not_flipped_back(predict, x):
    total = 0
    subsets = [dims for r in range(4) for dims in itertools.combinations((2, 3, 4), r)]
    for dims in subsets:
        total = total + torch.sigmoid(predict(torch.flip(x, dims) if dims else x))
    return total / len(subsets)


def _kl_summed_over_the_batch(mean, std):
    return 0.5 * (mean.pow(2) + std.pow(2) - torch.log(std.pow(2)) - 1).sum(0)


def _vae_loss_counting_the_channels(image, reconstruction, mean, std):
    """Divides the KL term by every value of one image (channels included), not by its voxels."""
    l2 = (reconstruction - image).pow(2).mean()
    kl = ((mean.pow(2) + std.pow(2) - torch.log(std.pow(2)) - 1).sum(-1) / image[0].numel()).mean()
    return 0.1 * l2 + 0.1 * kl


def _dense_inputs_rounding_down(input_size, depth, vae_width):
    """Halves the endpoint with // (rounding down) where the stride-2 convolution rounds up."""
    return vae_width * math.prod(s // 2**depth // 2 for s in input_size)


def _break_even_as_a_float(widths):
    """The bound itself, not the first whole number of channels above it."""
    a, b, c = widths
    return 9 * b * (a + c) / (25 * b + 49 * c)


def _widths_by_fractions(u, alpha):
    """W/6, W/3, W/2: the paper's fractions, not the code's decimals."""
    w = alpha * u
    return int(w / 6), int(w / 3), int(w / 2)


def _res_unit_norm_before_the_relu(x, conv, shortcut, norm):
    with torch.no_grad():
        return torch.relu(norm(conv(x) + shortcut(x)))


def _block_counts_every_norm_scaled(in_channels, u):
    """Gives the conv2d_bn norms a scale too (Keras's default BatchNormalization, not scale=False)."""
    w = 1.67 * u
    a, b, c = int(w * 0.167), int(w * 0.333), int(w * 0.5)
    out = a + b + c
    convs = 9 * (in_channels * a + a * b + b * c) + in_channels * out
    return {"trainable": convs + 2 * (a + b + c + out) + 4 * out, "non_trainable": 8 * out}


def _separable_without_biases(c_in, c_out, kernel, dims):
    return kernel**dims * c_in * c_out, kernel**dims * c_in + c_in * c_out


def _full_kernel_transposed(depthwise_weight, pointwise_weight):
    """Multiplies each output's weights into the kernels of the wrong axis (outputs and inputs swapped)."""
    c_out, c_in = pointwise_weight.shape[:2]
    point = pointwise_weight.reshape(c_out, c_in, *[1] * (depthwise_weight.dim() - 2)).transpose(0, 1)
    return point * depthwise_weight


def _adapter_unit_activation_last(x, depthwise, inner_norm, pointwise, outer_norm):
    """Puts the LeakyReLU after the pointwise step instead of between the two steps."""
    with torch.no_grad():
        return torch.nn.functional.leaky_relu(outer_norm(pointwise(inner_norm(depthwise(x)))), 0.01)


#: exercise -> [(a wrong answer, a fragment the reply must hold)]; every exercise has at least one.
WRONG_ANSWERS = {
    "lesson00.crossed_standard_error": [(_crossed_se_counts_not_df, "<array (5, 12)>")],
    "lesson00.sign_test": [(_sign_test_one_sided, "too small")],
    "lesson00.verdict": [(_verdict_margin_first, "case 5 of 6")],
    "lesson01.exact_x4": [(_exact_x4_off_by_one, "expected a list of 3 tuples; got a list of 2 tuples")],
    "lesson01.vgg_fields": [(_vgg_fc6_counted_as_7, "the values for 'fc7' differ")],
    "lesson01.fcn32s_parameters": [(_fcn32s_without_biases, "too small")],
    "lesson01.bilinear_x3": [(_nearest_x3, "the values differ")],
    "lesson02.valid_sizes": [(_valid_sizes_without_the_even_check, "case 1 of 3")],
    "lesson02.textbook_field": [(_textbook_field_without_halving, "but the value differs")],
    "lesson02.weighted_cross_entropy": [(_weighted_ce_softmax_on_the_last_axis, "your value is too"),
                                        (_weighted_ce_sum, "your value is too")],
    "lesson02.iou_from_dice": [(_iou_from_dice_inverted, "the values differ")],
    "lesson02.training_loop": [(_loop_without_zero_grad, "items [2, 3, 4] (counting from 0) differ")],
    "lesson03.paper_parameters": [(_cicek_upconvs_with_bias, "too large")],
    "lesson03.valid_sides": [(_valid_sides_without_the_bottleneck, "case 1 of 3")],
    "lesson03.conv_output_bytes": [(_conv_output_bytes_forgets_the_transposed, "too small")],
    "lesson03.labelled_fraction": [(_labelled_fraction_without_overlaps, "too large")],
    "lesson04.table1": [(_table1_upconv_at_the_coarse_step, "items [5, 6, 7, 8]")],
    "lesson04.vnet_parameters": [(_vnet_parameters_without_prelu, "too small")],
    "lesson04.vnet_dice": [(_vnet_dice_ignores_squared, "squared=True")],
    "lesson05.unetpp_parameters": [(_unetpp_one_head_always, "case 2 of 3")],
    "lesson05.head_fields": [(_head_fields_halving_after_the_convs, "items [0, 1, 2, 3]")],
    "lesson05.linear_cka": [(_cka_without_centring, "case 2 of 3")],
    "lesson06.regions": [(_regions_core_with_edema, "the values differ")],
    "lesson06.brats_dice": [(_brats_dice_zero_when_empty, "case 2 of 5")],
    "lesson06.remove_small_enhancing": [(_remove_small_counting_every_region, "the values differ")],
    "lesson06.mirrored_probabilities": [(_mirrored_not_flipped_back, "the values differ")],
    "lesson07.kl_divergence": [(_kl_summed_over_the_batch, "expected a tensor of shape (1,)")],
    "lesson07.vae_loss": [(_vae_loss_counting_the_channels, "your value is too")],
    "lesson07.dense_inputs": [(_dense_inputs_rounding_down, "too small")],
    "lesson08.break_even_channels": [(_break_even_as_a_float, "expected an int; got a float")],
    "lesson08.branch_widths": [(_widths_by_fractions, "items [0] (counting from 0) differ")],
    "lesson08.res_path_unit": [(_res_unit_norm_before_the_relu, "the values differ by up to")],
    "lesson08.block_counts": [(_block_counts_every_norm_scaled, "the values for 'trainable' differ")],
    "lesson09.separable_parameters": [(_separable_without_biases, "items [0, 1] (counting from 0) differ")],
    "lesson09.full_kernel": [(_full_kernel_transposed, "expected a tensor of shape (5, 3, 3, 3, 3)")],
    "lesson09.adapter_unit": [(_adapter_unit_activation_last, "the values differ by up to")],
}


def test_every_exercise_has_a_hand_written_wrong_answer():
    assert sorted(WRONG_ANSWERS) == sorted(EXERCISES)


@pytest.mark.parametrize("name, wrong, fragment",
                         [(name, wrong, fragment) for name, answers in sorted(WRONG_ANSWERS.items())
                          for wrong, fragment in answers],
                         ids=lambda value: getattr(value, "__name__", None) if callable(value) else None)
def test_a_students_mistake_fails_with_a_hint(name, wrong, fragment):
    result = check_exercise(name, wrong)
    message = repr(result)
    assert not result and result.attempted, message
    assert f"Hint: {EXERCISES[name].hint}" in message and fragment in message, message


def test_an_answer_that_changes_its_input_in_place_is_told_to_work_on_a_copy():
    def in_place(regions, min_voxels):  # right values, but the student's regions are emptied too
        regions[regions[:, 2].flatten(1).sum(1) < min_voxels, 2] = False
        return regions

    result = check_exercise("lesson06.remove_small_enhancing", in_place)
    message = repr(result)
    assert not result and result.attempted, message
    assert "changed its input `regions` in place" in message and "regions.clone()" in message, message
    assert message.startswith("lesson06.remove_small_enhancing: your function changed") and "Hint: " in message


def test_an_in_place_edit_of_a_numpy_input_is_caught_too():
    def centred_in_place(differences):  # the grand mean drops out of every mean square: the value is right
        differences -= differences.mean()
        return EXERCISES["lesson00.crossed_standard_error"].reference(differences)

    message = repr(check_exercise("lesson00.crossed_standard_error", centred_in_place))
    assert "changed its input `differences` in place" in message and "differences.copy()" in message, message


def test_the_reference_runs_first_on_its_own_copy(monkeypatch):
    from unet_lessons.exercises import Exercise

    calls, case = [], {"x": torch.arange(4.0)}

    def reference(x):
        calls.append(("reference", x))
        return x.sum()

    def student(x):
        calls.append(("student", x))
        x.zero_()
        return x.sum()

    monkeypatch.setitem(EXERCISES, "lesson99.spy", Exercise("lesson99.spy", "spy(x)", reference, lambda rng: [case],
                                                            "a hint", same))
    message = repr(check_exercise("lesson99.spy", student))
    assert [who for who, _ in calls] == ["reference", "student"]
    assert calls[0][1] is not case["x"] and calls[1][1] is not case["x"] and calls[0][1] is not calls[1][1]
    # Only the student's copy changed.
    assert case["x"].equal(torch.arange(4.0)) and calls[0][1].equal(torch.arange(4.0))
    assert "changed its input `x` in place" in message and "x.clone()" in message


def test_a_tensor_of_the_wrong_dtype_fails():
    result = check_exercise("lesson06.regions", lambda label: EXERCISES["lesson06.regions"].reference(label).float())
    message = repr(result)
    assert not result and "bool; got a tensor of shape (3, 6, 7, 8), float32" in message, message
    assert not same(torch.ones(2), torch.ones(2, dtype=torch.float64))
    assert not same(torch.ones(2), torch.ones(2, dtype=torch.bool))


@pytest.mark.parametrize("name", [n for n in sorted(EXERCISES) if all(not case for case in EXERCISES[n].fresh_cases())])
def test_a_fixed_answer_gets_no_larger_or_smaller_hint(name):
    """An exercise without arguments has one answer: "too large" would let a student find it by bisection."""
    expected = EXERCISES[name].reference()
    for wrong in (perturbed(expected), expected * 2 if not isinstance(expected, dict) else {}):
        message = repr(check_exercise(name, lambda: wrong))
        assert "not yet right" in message and "too large" not in message and "too small" not in message, message


def test_an_answer_that_depends_on_the_case_still_gets_its_direction():
    message = repr(check_exercise("lesson01.fcn32s_parameters", _fcn32s_without_biases))
    assert "too small" in message


def test_a_wrong_answer_never_names_the_keys_or_the_gap_that_would_give_it_away():
    # valid_sides: the keys of the expected dict are the sizes that work, i.e. the answer itself.
    reference = EXERCISES["lesson03.valid_sides"].reference
    half = lambda start, stop: dict(list(reference(start, stop).items())[::2])  # noqa: E731
    message = repr(check_exercise("lesson03.valid_sides", half))
    assert "not yet right" in message and "expected a dict with 13 keys; got a dict with 7 keys." in message, message
    same_count = lambda start, stop: {side + 1: out for side, out in reference(start, stop).items()}  # noqa: E731
    message = repr(check_exercise("lesson03.valid_sides", same_count))
    assert "13 expected keys missing; 13 keys that should not be there" in message, message
    assert not any(f"{side}" in message.split("):")[1] for side in reference(100, 200)), message
    # One-number tensor answers: "differ by up to X" would give the answer in two tries.
    vae = EXERCISES["lesson07.vae_loss"].reference
    message = repr(check_exercise("lesson07.vae_loss", lambda **case: vae(**case) * 1.5))
    assert "not yet right" in message and "differ by up to" not in message, message
