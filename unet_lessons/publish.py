"""Where the lessons are published, and the two cells that open each lesson: the Colab badge and setup.

One setting says where the lessons are published: ``[tool.unet-lessons.published]`` in
``pyproject.toml``, the public repository's URL and the release tag. Each lesson's first two cells
are generated from it (``python -m unet_lessons.publish``; ``make colab``):

* a Markdown cell (tag ``colab-badge``) with an "Open in Colab" badge for the lesson **at the
  release tag**, never ``main``, so a lesson opens with the tables and solutions it was checked with;
* a code cell (tag ``colab-setup``) that does nothing outside Colab. On Colab it clones the
  repository at the tag (the lessons read ``notebooks/results/`` and ``notebooks/solutions/``,
  which installing the package does not bring) and installs the package with pip's
  ``only-if-needed`` strategy: what Colab already ships and our requirements admit (torch, numpy,
  its ipywidgets 7) stays as it is, because upgrading ipywidgets there forces a runtime restart.

With the setting empty (not published yet) the badge cell says so and the setup cell, on Colab,
stops with what to do instead. ``tests/test_publish.py`` checks the stored cells against the
setting and runs the setup cell in a simulated Colab.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"
#: Colab opens notebooks of public GitHub repositories only.
_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)/?$")
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
#: The lessons: notebooks/NN_topic.ipynb.
LESSON_GLOB = "[0-9][0-9]_*.ipynb"


@dataclass(frozen=True)
class Publication:
    """The public repository (``https://github.com/<owner>/<name>``) and the release tag; both empty: not published."""

    repository: str = ""
    tag: str = ""

    def __post_init__(self):
        if bool(self.repository) != bool(self.tag):
            missing = "tag" if self.repository else "repository"
            raise ValueError(f"[tool.unet-lessons.published] sets one of repository and tag but not the {missing}: "
                             "set both (the Colab badges open the repository at the tag) or neither (not published).")
        if self.repository and not _GITHUB.match(self.repository):
            raise ValueError(f"published repository {self.repository!r} is not a GitHub URL of the form "
                             "https://github.com/<owner>/<name>; Colab opens notebooks from GitHub only.")
        if self.tag in {"main", "master", "HEAD"}:
            raise ValueError(f"published tag {self.tag!r} is a branch; give a release tag (e.g. v0.1.0), so that "
                             "a lesson opens with the stored tables and solutions it was checked with.")

    @property
    def published(self) -> bool:
        return bool(self.repository)

    def colab_url(self, lesson: str) -> str:
        """The lesson (a file name in ``notebooks/``) at the release tag, opened in Colab."""
        match = _GITHUB.match(self.repository)
        return (f"https://colab.research.google.com/github/{match['owner']}/{match['name']}"
                f"/blob/{self.tag}/notebooks/{lesson}")


def read_publication(pyproject: Path = ROOT / "pyproject.toml") -> Publication:
    """The setting ``[tool.unet-lessons.published]`` (absent: not published)."""
    settings = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))
    published = settings.get("tool", {}).get("unet-lessons", {}).get("published", {})
    return Publication(repository=published.get("repository", "").strip(), tag=published.get("tag", "").strip())


def badge_source(publication: Publication, lesson: str) -> str:
    if not publication.published:
        return ("*Open in Colab:* not yet: these lessons are not published. Run them on your own machine "
                "with `make lab` (see the README).")
    return (f"[![Open in Colab]({BADGE_IMAGE})]({publication.colab_url(lesson)}) "
            f"(the lessons at release {publication.tag})")


def setup_source(publication: Publication, content: str = "/content") -> str:
    """The first code cell: nothing outside Colab; on Colab, fetch the lessons at the tag and install the package.

    ``content`` is Colab's working folder; the tests run the cell in a temporary one.
    """
    head = ("# On Google Colab only: fetch the lessons and install their package. Elsewhere this cell does nothing.\n"
            "import sys\n\n"
            'if "google.colab" in sys.modules:\n')
    if not publication.published:
        return head + ('    raise RuntimeError("These lessons are not published yet, so Colab cannot fetch them. "\n'
                       '                       "Run them on your own machine: clone the repository and run make lab.")')
    checkout = f"{content}/unet-lessons"
    return head + (
        "    import importlib\n"
        "    import os\n"
        "    import subprocess\n\n"
        f'    REPOSITORY, TAG, CHECKOUT = "{publication.repository}", "{publication.tag}", "{checkout}"\n'
        "    if not os.path.isdir(CHECKOUT):\n"
        "        # The tables and solutions the lessons read come with the repository, not with the package.\n"
        '        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", TAG, REPOSITORY, CHECKOUT],\n'
        "                       check=True)\n"
        "    # only-if-needed keeps what Colab ships where our requirements admit it (torch, numpy, ipywidgets 7):\n"
        "    # upgrading ipywidgets there would force a restart of the runtime.\n"
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade-strategy", "only-if-needed",\n'
        "                    CHECKOUT], check=True)\n"
        "    importlib.invalidate_caches()\n"
        '    os.environ.setdefault("UNET_LESSONS_DATA", os.path.join(CHECKOUT, "data"))\n'
        '    os.chdir(os.path.join(CHECKOUT, "notebooks"))\n'
        '    sys.path.insert(0, os.path.join(CHECKOUT, "notebooks"))  # notebooks/solutions')


def _lesson_id(path: Path) -> str:
    return f"lesson{path.name[:2]}"


def opening_cells(publication: Publication, path: Path) -> list[nbformat.NotebookNode]:
    """The badge cell and the setup cell of one lesson."""
    lesson = _lesson_id(path)
    badge = nbformat.v4.new_markdown_cell(badge_source(publication, path.name), id=f"{lesson}-colab-badge")
    badge.metadata = {"tags": [BADGE_TAG]}
    setup = nbformat.v4.new_code_cell(setup_source(publication), id=f"{lesson}-colab-setup")
    setup.metadata = {"tags": [SETUP_TAG]}
    return [badge, setup]


def _is_opening(cell) -> bool:
    return bool({BADGE_TAG, SETUP_TAG} & set(cell.get("metadata", {}).get("tags", [])))


def stale_cells(path: Path, publication: Publication) -> list[str]:
    """What differs between a stored lesson's opening cells and those the setting gives (empty: up to date)."""
    notebook = nbformat.read(path, as_version=4)
    expected = opening_cells(publication, path)
    found = notebook.cells[:2]
    problems = []
    for want, have in zip(expected, found + [None] * (2 - len(found))):
        tag = want.metadata["tags"][0]
        if have is None or tag not in have.get("metadata", {}).get("tags", []):
            problems.append(f"{path.name}: no {tag} cell where it belongs (cell {expected.index(want)})")
        elif have.source != want.source:
            problems.append(f"{path.name}: the {tag} cell differs from what the setting gives")
    return problems


def write_opening_cells(path: Path, publication: Publication) -> bool:
    """Replace (or insert) the lesson's badge and setup cells; True when the file changed."""
    notebook = nbformat.read(path, as_version=4)
    before = nbformat.writes(notebook)
    body = [cell for cell in notebook.cells if not _is_opening(cell)]
    opening = opening_cells(publication, path)
    # Keep what a slide cut or a run stored on the cells (slide type, outputs of the setup cell: none).
    for new, old in zip(opening, [cell for cell in notebook.cells if _is_opening(cell)]):
        new.metadata = {**old.get("metadata", {}), "tags": new.metadata["tags"]}
    notebook.cells = opening + body
    after = nbformat.writes(notebook)
    if after != before:
        path.write_text(after + ("\n" if not after.endswith("\n") else ""), encoding="utf-8")
    return after != before


def lessons(folder: Path = ROOT / "notebooks") -> list[Path]:
    return sorted(Path(folder).glob(LESSON_GLOB))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_lessons.publish",
                                     description="Write each lesson's Colab badge and setup cell from the setting "
                                                 "[tool.unet-lessons.published] in pyproject.toml.")
    parser.add_argument("--check", action="store_true", help="only report lessons whose cells are stale")
    args = parser.parse_args(argv)
    publication = read_publication()
    state = (f"published at {publication.repository}, tag {publication.tag}" if publication.published
             else "not published (the setting is empty)")
    if args.check:
        problems = [problem for path in lessons() for problem in stale_cells(path, publication)]
        print("\n".join(problems) if problems else f"every lesson's opening cells match the setting: {state}")
        return 1 if problems else 0
    changed = [path.name for path in lessons() if write_opening_cells(path, publication)]
    print(f"{state}; rewrote {len(changed)} lesson(s): {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
