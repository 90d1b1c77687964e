"""Exercises a student fills in, and a checker that answers with a hint, never the answer.

Every lesson ends with exercises. Each one names a function for the student to write; the
lesson gives its stub (``raise NotImplementedError``) and a cell that calls
:func:`check_exercise` with it. The checker runs the student's function on cases the lesson
never showed, compares each result with the reference solution kept here, and replies:

* right on every case: one line saying so and on how many cases;
* not written yet (the stub still raises ``NotImplementedError``): what to do;
* wrong or raising: which case failed, the kind of value expected (type, length, shape,
  dtype, keys) against the kind received, and a hint; never the expected value itself;
* right values, but the student's function changed its inputs in place: which input, and to
  work on a copy.

The reference runs first, on its own copy of each case; the student's function then runs on
another copy, which is compared with the case afterwards. A tensor must have the reference's
dtype (float regions do not answer a task that asks for bool). An answer that is one number
too large or too small is told which, except where the exercise has one fixed answer (no
arguments): there the direction would let a student find it by bisection.

The references live in the package, one module per lesson (``lesson01`` …), so that the
exercises work wherever the package is installed; ``notebooks/solutions/`` keeps the worked
solutions to read, with a written answer to every question, and imports the same references.

Example:
    >>> def valid_sizes_depth3(start, stop):
    ...     raise NotImplementedError
    >>> check_exercise("lesson02.valid_sizes", valid_sizes_depth3)
    lesson02.valid_sizes: not attempted yet. Replace `raise NotImplementedError` with your code and run the cell again.
"""

from __future__ import annotations

import copy
import inspect
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["Exercise", "ExerciseResult", "EXERCISES", "register", "check_exercise", "describe", "exercise_names"]


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to write, the reference, fresh cases and a hint.

    Attributes:
        name: ``"lessonNN.short_name"``, the key students pass to :func:`check_exercise`.
        task: one sentence: the function to write and what it returns.
        reference: the reference solution, called with each case's keyword arguments.
        cases: ``cases(rng) -> [kwargs, ...]``: arguments the lesson never showed, drawn from a
            generator seeded by the exercise's name, so that a reply is the same on every run.
        hint: what to look at when a case fails; it must not give the answer away.
        compare: ``compare(answer, expected) -> bool``; by default equal values, floats and
            tensors to a relative 1e-5.
    """

    name: str
    task: str
    reference: Callable[..., Any]
    cases: Callable[[np.random.Generator], list[dict]]
    hint: str
    compare: Callable[[Any, Any], bool] = field(default=None)  # type: ignore[assignment]

    def fresh_cases(self) -> list[dict]:
        return self.cases(np.random.default_rng(zlib.crc32(self.name.encode())))


#: Every exercise by name, filled by the lesson modules when the package is imported.
EXERCISES: dict[str, Exercise] = {}


def register(name: str, *, task: str, cases: Callable[[np.random.Generator], list[dict]], hint: str,
             compare: Optional[Callable[[Any, Any], bool]] = None) -> Callable:
    """Decorator: register the decorated reference function as the exercise ``name``."""

    def decorate(reference: Callable) -> Callable:
        if name in EXERCISES:
            raise ValueError(f"exercise {name!r} is registered twice.")
        EXERCISES[name] = Exercise(name, task, reference, cases, hint, compare or same)
        return reference

    return decorate


def exercise_names(lesson: Optional[str] = None) -> list[str]:
    """The registered exercise names, of one lesson (``"lesson02"``) or of all."""
    return sorted(n for n in EXERCISES if lesson is None or n.startswith(f"{lesson}."))


# ----- comparing and describing values -------------------------------------------------------
def same(answer: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """Equal in kind and value; floats and tensors to ``rtol``/``atol``, containers element by element.

    Tensors must also agree in dtype: ``torch.allclose`` on both cast to double would let a float
    answer pass a task that asks for bool, or a float32 one a task that asks for float64.
    """
    if isinstance(expected, torch.Tensor):
        return (isinstance(answer, torch.Tensor) and answer.shape == expected.shape and answer.dtype == expected.dtype
                and bool(torch.allclose(answer.detach().double().cpu(), expected.detach().double().cpu(),
                                        rtol=rtol, atol=atol)))
    if isinstance(expected, bool) or isinstance(answer, bool):
        both = isinstance(answer, (bool, np.bool_)) and isinstance(expected, (bool, np.bool_))
        return both and bool(answer) == bool(expected)
    if isinstance(expected, (int, np.integer)) and isinstance(answer, (int, np.integer)):
        return int(answer) == int(expected)
    if isinstance(expected, (int, float, np.number)):
        if isinstance(answer, torch.Tensor) and answer.numel() == 1:
            answer = answer.item()
        return (isinstance(answer, (int, float, np.number)) and not isinstance(answer, bool)
                and math.isclose(float(answer), float(expected), rel_tol=rtol, abs_tol=atol))
    if isinstance(expected, dict):
        return (isinstance(answer, dict) and set(answer) == set(expected)
                and all(same(answer[k], expected[k], rtol=rtol, atol=atol) for k in expected))
    if isinstance(expected, (list, tuple)):
        return (isinstance(answer, (list, tuple)) and len(answer) == len(expected)
                and all(same(a, e, rtol=rtol, atol=atol) for a, e in zip(answer, expected)))
    return answer == expected


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe(value: Any) -> str:
    """The kind of a value, without the value: "a list of 3 ints", "a tensor of shape (2, 8, 8), float32"."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}, {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape}, {value.dtype}"
    if isinstance(value, (bool, np.bool_)):
        return "a bool"
    if isinstance(value, (int, np.integer)):
        return "an int"
    if isinstance(value, (float, np.floating)):
        return "a float"
    if isinstance(value, dict):  # not the keys: they can be the answer (lesson03.valid_sides)
        return f"a dict with {_plural(len(value), 'key')}"
    if isinstance(value, (list, tuple)):
        kind = type(value).__name__
        inner = {describe(v).split(" of ")[0].removeprefix("a ").removeprefix("an ") for v in value}
        return f"a {kind} of {_plural(len(value), inner.pop())}" if len(inner) == 1 else f"a {kind} of {len(value)} items"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def _call_text(name: str, case: dict) -> str:
    def short(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return f"<tensor {tuple(v.shape)}>"
        if isinstance(v, np.ndarray):
            return f"<array {v.shape}>"
        if isinstance(v, torch.nn.Module):
            return f"<{type(v).__name__}>"
        if inspect.isroutine(v):  # a function's repr holds a memory address, which means nothing to a student
            return f"<function {getattr(v, '__name__', 'given')}>"
        text = repr(v)
        if isinstance(v, (list, tuple)) and len(text) > 60:
            return f"<{type(v).__name__} of {_plural(len(v), 'item')}>"
        return text

    return f"{name}({', '.join(f'{k}={short(v)}' for k, v in case.items())})"


def _difference(answer: Any, expected: Any, *, direction: bool = True) -> str:
    """How a right-kind answer differs, without revealing the expected value.

    ``direction=False`` leaves out "too large" / "too small", for an exercise with one fixed answer.
    """
    if (isinstance(expected, torch.Tensor) and isinstance(answer, torch.Tensor) and answer.shape == expected.shape
            and expected.numel() == 1):  # one number: the gap would give the answer away in two tries
        answer, expected = answer.item(), expected.item()
    elif isinstance(expected, torch.Tensor) and isinstance(answer, torch.Tensor) and answer.shape == expected.shape:
        gap = (answer.detach().double().cpu() - expected.detach().double().cpu()).abs()
        return f"the values differ by up to {gap.max().item():.3g} ({(gap > 1e-5).double().mean().item():.0%} of the entries)"
    if isinstance(expected, dict) and isinstance(answer, dict):
        missing, extra = set(expected) - set(answer), set(answer) - set(expected)
        if missing or extra:  # counts only: where the keys are the answer (valid sizes), naming them would give it away
            return "; ".join(part for part in (f"{_plural(len(missing), 'expected key')} missing" if missing else "",
                                               f"{_plural(len(extra), 'key')} that should not be there"
                                               if extra else "") if part)
        wrong = [k for k in expected if not same(answer[k], expected[k])]
        return f"the values for {', '.join(repr(k) for k in wrong)} differ"
    if isinstance(expected, (list, tuple)) and isinstance(answer, (list, tuple)) and len(answer) == len(expected):
        wrong = [i for i, (a, e) in enumerate(zip(answer, expected)) if not same(a, e)]
        return f"items {wrong[:6]}{' ...' if len(wrong) > 6 else ''} (counting from 0) differ"
    if (direction and isinstance(expected, (int, float)) and isinstance(answer, (int, float))
            and not isinstance(expected, bool)):
        return f"your value is too {'large' if answer > expected else 'small'}"
    return "the value differs"


def _unchanged(before: Any, after: Any) -> bool:
    """``after`` still holds what ``before`` held: tensors and arrays value for value (NaN equal to NaN),
    modules weight for weight, containers item by item, anything else by ``==``."""
    if isinstance(before, torch.Tensor):
        if not (isinstance(after, torch.Tensor) and after.shape == before.shape and after.dtype == before.dtype):
            return False
        equal = before == after
        if before.is_floating_point() or before.is_complex():
            equal |= before.isnan() & after.isnan()
        return bool(equal.all())
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and after.shape == before.shape and after.dtype == before.dtype
                and bool(np.array_equal(before, after, equal_nan=before.dtype.kind in "fc")))
    if isinstance(before, torch.nn.Module):
        a, b = before.state_dict(), after.state_dict()
        return a.keys() == b.keys() and all(_unchanged(a[k], b[k]) for k in a)
    if isinstance(before, dict):
        return isinstance(after, dict) and before.keys() == after.keys() and all(_unchanged(before[k], after[k])
                                                                                for k in before)
    if isinstance(before, (list, tuple)):
        return (isinstance(after, type(before)) and len(after) == len(before)
                and all(_unchanged(b, a) for b, a in zip(before, after)))
    try:
        return bool(before == after)
    except Exception:  # an object that cannot compare itself: assume it was left alone
        return True


def _copy_advice(argument: str, value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{argument}.clone()"
    if isinstance(value, np.ndarray):
        return f"{argument}.copy()"
    if isinstance(value, torch.nn.Module):
        return f"copy.deepcopy({argument}), or leave its weights alone"
    return f"copy.deepcopy({argument})"


# ----- the checker -----------------------------------------------------------------------------
@dataclass
class ExerciseResult:
    """The checker's reply: true when the answer passed; shown as its message in a notebook."""

    name: str
    passed: bool
    attempted: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def _repr_markdown_(self) -> str:
        mark = "✅" if self.passed else ("✏️" if not self.attempted else "❌")
        return f"{mark} " + self.message.replace("\n", "  \n")


def check_exercise(name: str, answer: Any) -> ExerciseResult:
    """Check a student's answer to exercise ``name`` on fresh cases; reply with a hint on a mismatch.

    Args:
        name: the exercise, e.g. ``"lesson02.valid_sizes"`` (see :func:`exercise_names`).
        answer: the student's function, called with each case's keyword arguments.

    Returns:
        An :class:`ExerciseResult`: true when every case matched; in a notebook it shows its message.
    """
    if name not in EXERCISES:
        close = [n for n in EXERCISES if n.split(".")[0] == name.split(".")[0]] or exercise_names()
        raise KeyError(f"no exercise {name!r}; this lesson's exercises are {close}.")
    exercise = EXERCISES[name]
    if not callable(answer):
        raise TypeError(f"check_exercise({name!r}, ...) takes your function itself, not its result: "
                        f"pass the name without brackets. {exercise.task}")
    cases = exercise.fresh_cases()
    direction = not all(not case for case in cases)  # no "too large" where the answer is one fixed value
    for number, case in enumerate(cases, start=1):
        where = f"case {number} of {len(cases)}, {_call_text(getattr(answer, '__name__', 'answer'), case)}"
        # Each side gets its own copy, the reference first, so that neither sees what the other did to its inputs.
        expected = exercise.reference(**copy.deepcopy(case))
        given = copy.deepcopy(case)
        try:
            got = answer(**given)
        except NotImplementedError:
            return ExerciseResult(name, False, False, f"{name}: not attempted yet. Replace `raise NotImplementedError` "
                                                      "with your code and run the cell again.")
        except Exception as error:  # the student's code failed: say how, and where
            first = str(error).split("\n")[0][:200]
            return ExerciseResult(name, False, True, f"{name}: your function raised {type(error).__name__} "
                                                     f"({first}) on {where}.\nHint: {exercise.hint}")
        changed = [argument for argument, value in case.items() if not _unchanged(value, given[argument])]
        if changed:
            advice = ", ".join(_copy_advice(argument, case[argument]) for argument in changed)
            inputs = ", ".join(f"`{argument}`" for argument in changed)
            plural = "s" if len(changed) > 1 else ""
            return ExerciseResult(name, False, True, f"{name}: your function changed its input{plural} {inputs} in "
                                                     f"place on {where}; the caller's data must stay as it was. "
                                                     f"Work on a copy ({advice}) and return that.\nHint: {exercise.hint}")
        if exercise.compare(got, expected):
            continue
        kind, expected_kind = describe(got), describe(expected)
        detail = (f"expected {expected_kind}; got {kind}." if kind != expected_kind
                  else f"got the right kind ({kind}), but {_difference(got, expected, direction=direction)}.")
        return ExerciseResult(name, False, True, f"{name}: not yet right on {where}: {detail}\nHint: {exercise.hint}")
    on = "the one case" if len(cases) == 1 else f"all {len(cases)} cases"
    return ExerciseResult(name, True, True, f"{name}: correct on {on}.")


# The lesson modules register their exercises on import.
from . import lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08, lesson09  # noqa: E402,F401
