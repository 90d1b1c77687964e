"""The publication setting, each lesson's Colab badge and setup cell, and the setup cell run in a simulated Colab."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from unet_lessons import publish
from unet_lessons.publish import Publication

EXAMPLE = Publication(repository="https://github.com/example-org/unet-lessons", tag="v0.1.0")


def test_the_stored_lessons_open_with_the_cells_the_setting_gives():
    setting = publish.read_publication()
    problems = [problem for path in publish.lessons() for problem in publish.stale_cells(path, setting)]
    assert publish.lessons() and not problems, "\n".join(problems) + "\nrun: make colab"


def test_a_changed_setting_makes_the_stored_cells_stale():
    assert publish.stale_cells(publish.lessons()[0], EXAMPLE)


def test_unpublished_badges_say_so_and_point_nowhere():
    text = publish.badge_source(Publication(), "02_unet.ipynb")
    assert "not published" in text and "http" not in text


def test_the_badge_opens_the_lesson_at_the_release_tag():
    text = publish.badge_source(EXAMPLE, "02_unet.ipynb")
    url = "https://colab.research.google.com/github/example-org/unet-lessons/blob/v0.1.0/notebooks/02_unet.ipynb"
    assert f"]({url})" in text and "/main/" not in text


@pytest.mark.parametrize("repository, tag, message", [
    ("https://github.com/example-org/unet-lessons", "", "not the tag"),
    ("", "v0.1.0", "not the repository"),
    ("https://gitlab.com/example-org/unet-lessons", "v0.1.0", "GitHub"),
    ("https://github.com/example-org/unet-lessons", "main", "branch"),
])
def test_a_half_or_wrong_setting_is_refused_with_what_to_do(repository, tag, message):
    with pytest.raises(ValueError, match=message):
        Publication(repository=repository, tag=tag)


def test_the_setting_is_read_from_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.unet-lessons.published]\nrepository = "https://github.com/a/b"\ntag = "v1"\n')
    assert publish.read_publication(pyproject) == Publication("https://github.com/a/b", "v1")
    pyproject.write_text("[project]\nname = 'x'\n")
    assert not publish.read_publication(pyproject).published


def test_writing_the_cells_twice_changes_nothing_and_keeps_the_lesson(tmp_path):
    source = publish.lessons()[2]
    path = tmp_path / source.name
    path.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    body = [cell.source for cell in nbformat.read(path, as_version=4).cells[2:]]
    assert publish.write_opening_cells(path, EXAMPLE)
    assert not publish.write_opening_cells(path, EXAMPLE)
    notebook = nbformat.read(path, as_version=4)
    assert [cell.source for cell in notebook.cells[2:]] == body
    assert not publish.stale_cells(path, EXAMPLE)


# ----- the setup cell, run as Colab would run it ------------------------------------------------

def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def released_repository(tmp_path):
    """A git repository with the files a lesson reads, tagged v0.1.0, and a later commit on its branch."""
    repository = tmp_path / "origin"
    (repository / "notebooks" / "results").mkdir(parents=True)
    (repository / "notebooks" / "solutions").mkdir()
    (repository / "notebooks" / "results" / "02_unet.csv").write_text("arm,seed\n")
    (repository / "notebooks" / "solutions" / "__init__.py").write_text("")
    (repository / "pyproject.toml").write_text("[project]\nname = 'unet-lessons'\n")
    (repository / "RELEASE").write_text("the release\n")
    _git("init", "-q", "-b", "main", cwd=repository)
    _git("add", "-A", cwd=repository)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "release", cwd=repository)
    _git("tag", "v0.1.0", cwd=repository)
    (repository / "RELEASE").write_text("after the release\n")
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "later", cwd=repository)
    return repository


@pytest.fixture
def colab(monkeypatch, tmp_path, released_repository):
    """Colab's kernel as the cell sees it: ``google.colab`` imported, GitHub answered by the local repository.

    git runs for real (its URL rewritten to the local repository); pip is recorded, not run.
    """
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{released_repository.as_uri()}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", EXAMPLE.repository)
    monkeypatch.delenv("UNET_LESSONS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    commands = []
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        commands.append(list(command))
        if command[0] == "git":
            return real_run(command, *args, **kwargs)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", run)
    content = tmp_path / "content"
    content.mkdir()
    return types.SimpleNamespace(content=content, commands=commands)


def _run_cell(source):
    exec(compile(source, "<colab-setup>", "exec"), {"__name__": "__main__"})


def test_on_colab_the_cell_fetches_the_release_and_installs_without_upgrading(colab):
    _run_cell(publish.setup_source(EXAMPLE, content=str(colab.content)))
    checkout = colab.content / "unet-lessons"
    assert (checkout / "RELEASE").read_text() == "the release\n", "the checkout is not at the release tag"
    assert (checkout / "notebooks" / "results" / "02_unet.csv").is_file()
    assert (checkout / "notebooks" / "solutions" / "__init__.py").is_file()
    pip = [command for command in colab.commands if command[1:3] == ["-m", "pip"]]
    assert len(pip) == 1 and pip[0][0] == sys.executable
    assert pip[0][-1] == str(checkout)
    assert "only-if-needed" in pip[0] and not {"-U", "--upgrade", "--force-reinstall"} & set(pip[0])
    assert Path.cwd() == checkout / "notebooks"
    assert sys.path[0] == str(checkout / "notebooks")
    assert os.environ["UNET_LESSONS_DATA"] == str(checkout / "data")


def test_on_colab_a_second_lesson_reuses_the_checkout(colab):
    source = publish.setup_source(EXAMPLE, content=str(colab.content))
    _run_cell(source)
    os.chdir(colab.content)
    _run_cell(source)
    assert sum(command[0] == "git" for command in colab.commands) == 1
    assert sum(command[1:3] == ["-m", "pip"] for command in colab.commands) == 2


def test_on_colab_an_unpublished_lesson_stops_with_what_to_do(colab):
    with pytest.raises(RuntimeError, match="not published yet.*make lab"):
        _run_cell(publish.setup_source(Publication()))
    assert not colab.commands


@pytest.mark.parametrize("publication", [Publication(), EXAMPLE])
def test_outside_colab_the_cell_does_nothing(monkeypatch, tmp_path, publication):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("the cell ran a command outside Colab"))
    _run_cell(publish.setup_source(publication, content=str(tmp_path)))
    assert Path.cwd() == tmp_path and not list(tmp_path.iterdir())
