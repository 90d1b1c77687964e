"""Release files agree: one version number, and the licences LICENSE and CITATION.cff name.

The version lives in ``unet_lessons.__version__`` (pyproject.toml reads it from there);
CITATION.cff and CHANGELOG.md must repeat it, so these tests fail when one of them is bumped
and another is forgotten.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import unet_lessons

ROOT = Path(__file__).resolve().parents[1]
# Keep a Changelog headings: "## [0.1.0] - 2026-12-24" or "## [0.1.0] - Unreleased"; "## [Unreleased]" is no version.
VERSION_HEADING = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+[^\]]*)\]", re.MULTILINE)


def citation() -> dict:
    with open(ROOT / "CITATION.cff", encoding="utf-8") as file:
        return yaml.safe_load(file)


def newest_changelog_version() -> str:
    match = VERSION_HEADING.search((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert match, "CHANGELOG.md has no '## [x.y.z] - date' entry"
    return match["version"]


def test_the_package_version_is_the_one_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "unet_lessons.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", unet_lessons.__version__)


@pytest.mark.parametrize("where, read", [("CITATION.cff", lambda: str(citation()["version"])),
                                         ("CHANGELOG.md", newest_changelog_version)],
                         ids=["citation", "changelog"])
def test_release_files_repeat_the_package_version(where, read):
    assert read() == unet_lessons.__version__, (
        f"{where} says {read()} but unet_lessons.__version__ is {unet_lessons.__version__}: "
        f"bump them together")


def test_citation_is_valid_enough():
    cff = citation()
    assert cff["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(cff)  # CFF 1.2.0's required keys
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["license"] == ["MIT", "CC-BY-4.0"]


def test_license_names_both_licences_and_which_part_each_covers():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in text and "Permission is hereby granted, free of charge" in text
    assert "Creative Commons Attribution 4.0 International Public License" in text
    assert "Copyright (c) 2026 the unet-lessons contributors" in text
    parts = text.split("PART A")[0]  # the header that says which part is under which licence
    assert "(SPDX: MIT)" in parts and "(SPDX: CC-BY-4.0)" in parts
