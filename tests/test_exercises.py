"""The exercise checker: every reference passes its own checker, and wrong answers fail with a hint."""

import math

import pytest
import torch

from unet_lessons.exercises import EXERCISES, check_exercise, describe, exercise_names, lesson01, same

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
    assert describe({"pool3": 1}) == "a dict with 1 key ('pool3')" and describe(math.pi) == "a float"
