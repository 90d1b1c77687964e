"""Training progress that leaves one line behind: live while it runs, a summary when it ends.

A ``tqdm`` bar in a notebook is a widget, and a stored notebook keeps only the text it had when
it was created ("0%|"): every reader of the saved lesson sees bars stuck at zero. Here, in a
Jupyter kernel, progress is a plain text display that is updated in place (at most once a
second) and, at the end, replaced by the summary: "700/700 steps in 93 s, last loss 0.213".
What the notebook stores is that one line. In a terminal a ``tqdm`` bar runs and is removed,
and the summary is printed.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

from tqdm import tqdm

__all__ = ["StepProgress", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbconvert, nbval), where displays can be updated."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is not installed: certainly no kernel
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class _Line:
    """A one-line text display that a later call replaces, in a notebook."""

    def __init__(self, text: str) -> None:
        from IPython.display import Pretty, display

        self._pretty = Pretty
        self._handle = display(Pretty(text), display_id=True)

    def update(self, text: str) -> None:
        self._handle.update(self._pretty(text))


class StepProgress:
    """Progress over ``total`` steps; :meth:`finish` leaves the one-line summary.

    Args:
        total: the number of steps.
        enabled: show nothing at all when false (tests, benchmarks).
        label: what is counted, e.g. a run name; put in front of the line.
        min_interval: seconds between two live updates.
    """

    def __init__(self, total: int, *, enabled: bool = True, label: Optional[str] = None,
                 min_interval: float = 1.0) -> None:
        self.total, self.enabled, self.min_interval = total, enabled, min_interval
        self.prefix = f"{label}: " if label else ""
        self.start = self._last = time.perf_counter()
        self._line: Optional[_Line] = None
        self._bar: Optional[tqdm] = None
        if not enabled:
            return
        if in_notebook():
            self._line = _Line(f"{self.prefix}0/{total} steps")
        else:
            # In a terminal only; in a log file a bar's carriage returns are noise.
            self._bar = tqdm(total=total, desc=label or "training", leave=False, mininterval=min_interval,
                             disable=not sys.stderr.isatty())

    def update(self, step: int, loss: float) -> None:
        """Step ``step`` (1-based) is done with this loss."""
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        now = time.perf_counter()
        if self._line is not None and now - self._last >= self.min_interval:
            self._last = now
            rate = step / (now - self.start)
            left = (self.total - step) / rate if rate > 0 else float("nan")
            self._line.update(f"{self.prefix}{step}/{self.total} steps, {now - self.start:.0f} s, "
                              f"about {left:.0f} s to go, loss {loss:.3f}")

    def finish(self, step: int, loss: Optional[float], *, note: str = "") -> str:
        """Replace the live line (or bar) by the summary, and return it."""
        summary = f"{self.prefix}{step}/{self.total} steps in {time.perf_counter() - self.start:.0f} s"
        if loss is not None:
            summary += f", last loss {loss:.3f}"
        summary += note
        if not self.enabled:
            return summary
        if self._bar is not None:
            self._bar.close()
        if self._line is not None:
            self._line.update(summary)
        else:
            print(summary)
        return summary
