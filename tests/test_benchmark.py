"""Stored benchmark tables: they round-trip, and a table the code has outgrown fails here."""

import dataclasses
from importlib import import_module

import pytest

from unet_lessons.benchmark import LESSONS, Arm, config_hash, read_table, stale_arms, table_path, write_table


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_every_stored_table_matches_the_code(lesson):
    module = import_module(f"unet_lessons.benchmark.{LESSONS[lesson]}")
    table = read_table(table_path(lesson))
    stale = stale_arms(table, module.ARMS, module.SHARED)
    assert not stale, (f"{table.path.name} was made with other settings for {stale}: re-run "
                       f"`make bench` (python -m unet_lessons.benchmark {lesson}) and commit the table.")
    assert len(table.seeds) >= 3, "a seed spread needs at least three seeds"
    items = {len(table.scores(arm.name, seed)) for arm in module.ARMS for seed in table.seeds}
    assert items == {len(module.SHARED["test_volumes"])}, "every arm and seed is scored on every test item"


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_a_changed_setting_makes_the_table_stale(lesson):
    module = import_module(f"unet_lessons.benchmark.{LESSONS[lesson]}")
    table = read_table(table_path(lesson))
    first = module.ARMS[0]
    changed = dataclasses.replace(first, settings={**first.settings, "a new setting": 1})
    assert stale_arms(table, (changed,) + tuple(module.ARMS[1:]), module.SHARED) == [first.name]
    assert stale_arms(table, module.ARMS, {**module.SHARED, "steps": module.SHARED["steps"] + 1}) == [
        arm.name for arm in module.ARMS]


def test_tables_round_trip(tmp_path):
    arms = (Arm("a", {"x": 1}), Arm("b", {"x": 2}))
    rows = [dict(arm=a, seed=s, item=i, dice=0.5 + 0.1 * i + 0.01 * s) for a in "ab" for s in (0, 1) for i in (0, 1)]
    path = write_table(tmp_path / "t.csv", arms, {"steps": 3}, rows, seconds=12.0)
    table = read_table(path)
    assert table.seeds == [0, 1] and table.hashes["a"] == config_hash(arms[0], {"steps": 3})
    assert table.scores("b", 1).tolist() == [0.51, 0.61] and table.facts["benchmark seconds"] == "12"
    assert table.seed_differences("a", "b").tolist() == [0.0, 0.0]
    with pytest.raises(KeyError, match="make bench"):
        table.scores("c", 0)
    with pytest.raises(FileNotFoundError, match="make bench"):
        read_table(tmp_path / "missing.csv")
