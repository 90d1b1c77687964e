"""Stored benchmark tables: the code still makes them (hash and fingerprint), the format round-trips, a run resumes.

The lessons' tables are checked against the code in ``test_every_stored_table_matches_the_code``;
everything else runs on a tiny benchmark declared here (a two-layer network on 12×12 images),
in well under a second per run.
"""

from importlib import import_module
from pathlib import Path

import dataclasses
import numpy as np
import pytest
import torch
import torch.nn as nn

from unet_lessons.benchmark import (LESSONS, RESULTS_ENV, Arm, ArmStamp, Benchmark, Fingerprint, arm_stamps,
                                    check_table, load_benchmark, load_parent_weights, read_table, restamp,
                                    run_benchmark, stale_arms, table_path, write_table)
from unet_lessons.benchmark.table import cpu_kernels, header_lines
from unet_lessons.benchmark.resolve import LOSS_RTOL, SCORE_ATOL
from unet_lessons.benchmark import runner
from unet_lessons.benchmark.runner import _Units, partial_path, run_name
from unet_lessons.data import PatchSampler
from unet_lessons.metrics import dice_per_class
from unet_lessons.runs import saved_runs
from unet_lessons.train import TrainConfig, predict

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the lessons' stored tables

#: The one place that lists the tables allowed fewer than five seeds (issue 26 re-ran the last three with five).
MADE_BEFORE_THE_FIVE_SEED_RULE: set[str] = set()


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_every_stored_table_matches_the_code(lesson, monkeypatch):
    """Rebuilds every arm from the code: its resolved-settings hash, and its fingerprint (three training
    steps of seed 0, then every score of held-out item 0), within LOSS_RTOL and SCORE_ATOL of the table's.
    The tables are this checkout's (or those in $UNET_LESSONS_RESULTS, when set)."""
    monkeypatch.chdir(REPO)
    benchmark, table = load_benchmark(lesson), read_table(table_path(lesson))
    data = benchmark.make_data()
    problems = check_table(table, benchmark, data=data)
    assert not problems, (
        f"{table.path.name} no longer matches the code (losses within a relative {LOSS_RTOL:g}, scores within "
        f"{SCORE_ATOL:g}):\n  " + "\n  ".join(problems) + f"\nRe-run `make bench LESSONS={lesson}` "
        f"(python -m unet_lessons.benchmark {lesson}) and commit the table.")
    module = import_module(f"unet_lessons.benchmark.{LESSONS[lesson]}")
    assert not stale_arms(table, module.ARMS, module.SHARED, data=data)  # as the lesson calls it
    # Five seeds at least for every stored comparison.
    fewest = 3 if lesson in MADE_BEFORE_THE_FIVE_SEED_RULE else 5
    assert len(table.seeds) >= fewest and len(benchmark.seeds) >= fewest, (
        f"lesson {lesson}: {len(table.seeds)} stored seeds, {len(benchmark.seeds)} declared; at least {fewest}")
    views = benchmark.fold_views(data)  # [data] without folds; with folds, every item is held out by one of them
    for held_out in table.held_out_sets:  # a held-out set other than "test" may bring its own labels
        # "<set>_labels" (lesson 06's extra sets), "<domain>/test_labels" (lesson 09's domains), or "test_labels"
        keys = (f"{held_out}_labels", f"{held_out}/test_labels", "test_labels")
        count = sum(len(next(view[key] for key in keys if key in view)) for view in views)
        scored = {row["arm"] for row in table.rows if row["held_out"] == held_out}  # a domain's arms only (lesson 09)
        assert scored, f"no arm is scored on held-out set {held_out!r}"
        items = {len(table.scores(arm.name, seed, benchmark.metric, held_out=held_out))
                 for arm in benchmark.arms if arm.name in scored for seed in table.seeds}
        assert items == {count}, f"every arm and seed is scored on every item of held-out set {held_out!r}"


def test_the_lessons_call_stale_arms_with_their_arms_and_shared_settings():
    lesson04 = load_benchmark("04")
    from unet_lessons.benchmark.resolve import _benchmark_of

    assert _benchmark_of(tuple(lesson04.arms), lesson04.shared) is lesson04
    with pytest.raises(ValueError, match="own SHARED"):
        _benchmark_of(tuple(lesson04.arms), {**lesson04.shared, "steps": 1})


def test_table_path_is_found_from_the_repository_root_or_from_inside_notebooks(monkeypatch, tmp_path):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(REPO)
    from_root = table_path("04")
    monkeypatch.chdir(REPO / "notebooks")
    assert table_path("04").resolve() == from_root.resolve() == (REPO / "notebooks/results/04_vnet.csv")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=RESULTS_ENV):
        table_path("04")
    (tmp_path / "lessons" / "results").mkdir(parents=True)   # a copy of the lessons with their results beside them
    monkeypatch.chdir(tmp_path / "lessons")
    assert table_path("04") == tmp_path / "lessons" / "results" / "04_vnet.csv"
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "elsewhere"))
    assert table_path("04") == tmp_path / "elsewhere" / "04_vnet.csv"


# ---------------------------------------------------------------- a tiny benchmark

@pytest.fixture(autouse=True)
def _one_thread_for_tiny_tensors(request):
    """The tiny benchmark runs on one thread: on 12×12 images a second thread only makes the first wait, which on
    a busy 2-core machine turns 10 ms of training into a second. The lessons' checks keep the tables' thread count."""
    if "lesson" in request.fixturenames:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(nn.Module):
    """Conv -> ReLU -> 1×1 head; ``extra`` adds a residual 1×1 layer that only a child arm has."""

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)
        self.extra = nn.Conv2d(2, 2, 1) if extra else None

    def forward(self, x):
        out = self.head(torch.relu(self.features(x)))
        return out + self.extra(out) if self.extra is not None else out


def tiny_data():
    rng = np.random.default_rng(0)
    labels = (rng.random((6, 12, 12)) > 0.7).astype(np.int64)
    images = (labels + 0.4 * rng.standard_normal((6, 12, 12))).astype(np.float32)
    return dict(train_images=images[:4], train_labels=labels[:4], test_images=images[4:], test_labels=labels[4:])


def _dice(model, images, labels):
    prediction = predict(model, torch.from_numpy(images[:, None])).argmax(1)
    return np.array([float(dice_per_class(p, t, 2)[1]) for p, t in zip(prediction, torch.from_numpy(labels))])


def tiny_score(model, arm, data):
    """Two held-out sets: the test images, and the same with a brightness shift (another 'domain')."""
    return {"test": {"dice": _dice(model, data["test_images"], data["test_labels"]),
                     "foreground": data["test_labels"].reshape(len(data["test_labels"]), -1).mean(1)},
            "brighter": {"dice": _dice(model, data["test_images"] + 0.5, data["test_labels"])}}


def tiny_measure(model, arm, data, history):
    return {"train_dice": float(_dice(model, data["train_images"], data["train_labels"]).mean()),
            "seconds_per_step": history["seconds"] / len(history["loss"])}


def tiny_benchmark(*, base_lr=0.05, child_lr=0.01, label_smoothing=0.0, score=tiny_score, arms=None):
    arms = arms or (Arm("fine-tuned", {"lr": child_lr, "extra": True}, parent="base"), Arm("base", {"lr": base_lr}))

    def make_arm(name, seed, data):
        arm = {arm.name: arm for arm in arms}[name]
        torch.manual_seed(seed)
        model = TinyNet(extra=arm.settings.get("extra", False))
        batches = PatchSampler(data["train_images"], data["train_labels"], patch_size=8, batch_size=2,
                               augment=False, seed=seed, mean=0.0, std=1.0)
        config = TrainConfig(steps=4, lr=arm.settings["lr"], device="cpu", progress=False)
        return model, batches, nn.CrossEntropyLoss(label_smoothing=label_smoothing), config

    return Benchmark(lesson="tiny", table="tiny.csv", seeds=(0, 1), arms=tuple(arms),
                     shared={"about": "prose: not hashed"}, make_data=tiny_data, make_arm=make_arm, score=score,
                     measure=tiny_measure)


def _rows_without_timings(table):
    return [{k: v for k, v in row.items() if k not in ("seconds", "seconds_per_step")} for row in table.rows]


def test_a_changed_setting_and_a_changed_behaviour_are_each_detected(tmp_path, monkeypatch):
    benchmark, data = tiny_benchmark(), tiny_data()
    path = write_table(tmp_path / "tiny.csv", arm_stamps(benchmark, data), [], facts={"commit": "x"})
    table = read_table(path)
    assert check_table(table, benchmark, data=data) == []
    # A setting: the parent's learning rate. The child's hash holds its parent's, so both are stale.
    assert stale_arms(table, tiny_benchmark(base_lr=0.1), data=data) == ["fine-tuned", "base"]
    # A default nobody wrote in the arm's settings: the loss's label smoothing.
    problems = check_table(table, tiny_benchmark(label_smoothing=0.1), data=data, fingerprint=False)
    assert any(p.startswith("'base': resolved settings hash") for p in problems), problems
    # The data: one voxel of one training label.
    changed = {**data, "train_labels": data["train_labels"].copy()}
    changed["train_labels"][0, 0, 0] ^= 1
    assert stale_arms(table, benchmark, data=changed) == ["fine-tuned", "base"]
    # Behaviour with the same settings: a metric, then a forward pass. Only the fingerprint sees them.
    def halved_score(model, arm, data):
        scores = tiny_score(model, arm, data)
        scores["test"]["dice"] = scores["test"]["dice"] / 2
        return scores

    problems = check_table(table, tiny_benchmark(score=halved_score), data=data)
    assert not any("hash" in p for p in problems)
    assert any(p.startswith("'base': score test/dice of held-out item 0") for p in problems), problems
    monkeypatch.setattr(TinyNet, "forward", lambda self, x: self.head(torch.tanh(self.features(x))))
    problems = check_table(table, benchmark, data=data)
    assert problems and not any("hash" in p for p in problems)
    assert any(p.startswith("'base': loss of step 1") for p in problems), problems


def test_the_table_format_round_trips_held_out_sets_parents_and_per_seed_columns(tmp_path):
    stamps = [ArmStamp("a", "0123456789ab", Fingerprint((0.5, 0.25, 0.125), {"test/dice": 0.5, "other/dice": 0.25})),
              ArmStamp("b, fine-tuned", "ba9876543210", Fingerprint((1.0, 0.5, 0.25), {"test/dice": 0.75}), "a")]
    rows = [dict(arm=arm, seed=seed, held_out=held_out, item=item, dice=0.5 + 0.1 * item + 0.01 * seed + shift,
                 seconds=10.0 + seed, train_dice=0.9 - 0.1 * seed)
            for arm in ("a", "b, fine-tuned") for seed in (0, 1) for held_out, shift in (("test", 0.0), ("other", 0.2))
            for item in (0, 1)]
    table = read_table(write_table(tmp_path / "t.csv", stamps, rows, facts={"commit": "abc", "benchmark seconds": "12"}))
    assert table.stamps() == stamps and table.parents == {"b, fine-tuned": "a"}
    assert table.seeds == [0, 1] and table.arms == ["a", "b, fine-tuned"] and table.held_out_sets == ["test", "other"]
    assert table.scores("b, fine-tuned", 1).tolist() == [0.51, 0.61]
    assert table.scores("a", 0, held_out="other").tolist() == pytest.approx([0.7, 0.8])
    assert table.seed_differences("a", "b, fine-tuned", held_out="other").tolist() == [0.0, 0.0]
    assert table.differences("a", "a", "dice", metric_b="train_dice").ravel() == pytest.approx([-0.4, -0.3, -0.29, -0.19])
    assert table.per_seed("a", "train_dice").tolist() == [0.9, 0.8] and table.facts["benchmark seconds"] == "12"
    with pytest.raises(ValueError, match="per-item"):
        table.per_seed("a", "dice")
    with pytest.raises(KeyError, match="make bench"):
        table.scores("c", 0)
    with pytest.raises(FileNotFoundError, match="make bench"):
        read_table(tmp_path / "missing.csv")
    # Tables written before held-out sets, fingerprints and parents read as one set, "test".
    old = tmp_path / "old.csv"
    old.write_text("# commit: 4fdaf54\n# arm: a | hash: 8660cb8529c6\narm,seed,item,dice\na,0,0,0.5\na,0,1,0.25\n")
    table = read_table(old)
    assert table.held_out_sets == ["test"] and table.scores("a", 0).tolist() == [0.5, 0.25]
    assert table.hashes == {"a": "8660cb8529c6"} and table.fingerprints == {} and table.parents == {}


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_table(tmp_path):
    whole = read_table(run_benchmark(tiny_benchmark(), results=tmp_path / "a", runs=tmp_path / "runs-a",
                                     progress=False))
    scored = []

    def score_then_stop(model, arm, data):
        if len(data["test_labels"]) > 1:  # not the fingerprint's one-item view
            scored.append(arm.name)
            if len(scored) == 2:
                raise Interrupted
        return tiny_score(model, arm, data)

    with pytest.raises(Interrupted):
        run_benchmark(tiny_benchmark(score=score_then_stop), results=tmp_path / "b", runs=tmp_path / "runs-b",
                      progress=False)
    partial = read_table(partial_path(tmp_path / "b" / "tiny.csv"))
    assert partial.units() == {("base", 0)}  # parents first; one unit finished
    assert not (tmp_path / "b" / "tiny.csv").exists()
    resumed = read_table(run_benchmark(tiny_benchmark(), results=tmp_path / "b", runs=tmp_path / "runs-b",
                                       progress=False))
    assert not partial_path(tmp_path / "b" / "tiny.csv").exists()
    assert _rows_without_timings(resumed) == _rows_without_timings(whole)
    assert resumed.stamps() == whole.stamps() and resumed.columns == whole.columns
    assert resumed.held_out_sets == ["test", "brighter"] and "collapsed" in resumed.columns
    assert resumed.per_seed("fine-tuned", "train_dice").shape == (2,)
    # A partial file made by other settings is not resumed from.
    partial_path(tmp_path / "b" / "tiny.csv").write_text((tmp_path / "b" / "tiny.csv").read_text())
    other = read_table(run_benchmark(tiny_benchmark(child_lr=0.02), results=tmp_path / "b", runs=tmp_path / "runs-b",
                                     progress=False))
    assert other.hashes["fine-tuned"] != whole.hashes["fine-tuned"]


def test_keep_stored_trains_only_the_changed_arm_and_the_new_seed(tmp_path, monkeypatch, capsys):
    first = read_table(run_benchmark(tiny_benchmark(), results=tmp_path, runs=tmp_path / "runs", progress=False))
    trained = []
    real_fit = runner.fit

    def counting_fit(model, batches, loss, config):
        trained.append(config.lr)
        return real_fit(model, batches, loss, config)

    monkeypatch.setattr("unet_lessons.benchmark.runner.fit", counting_fit)
    benchmark = dataclasses.replace(tiny_benchmark(child_lr=0.02), seeds=(0, 1, 2))
    again = read_table(run_benchmark(benchmark, results=tmp_path, runs=tmp_path / "runs", progress=False,
                                     keep_stored=True))
    # base: seeds 0 and 1 kept (their weights, which the child starts from, load from their saved runs), seed 2
    # trained; fine-tuned: all three seeds trained
    assert sorted(trained) == [0.02, 0.02, 0.02, 0.05]
    assert "trained again: fine-tuned" in capsys.readouterr().out
    kept = [row for row in again.rows if row["arm"] == "base" and int(row["seed"]) < 2]
    assert kept == [row for row in first.rows if row["arm"] == "base"]
    assert again.seeds == [0, 1, 2] and again.hashes["fine-tuned"] != first.hashes["fine-tuned"]
    # the header says which rows are older than this run, and which table they came from
    assert again.facts["kept"].startswith("2 units kept from the table made at commit ")
    assert "base: seeds 0, 1" in again.facts["kept"] and "fine-tuned" not in again.facts["kept"]
    # without keep_stored the whole table is trained again
    trained.clear()
    run_benchmark(tiny_benchmark(child_lr=0.02), results=tmp_path / "c", runs=tmp_path / "c-runs", progress=False)
    assert len(trained) == 4


def test_keep_stored_keeps_the_rows_through_this_cpus_lines_and_says_the_others_are_dropped(tmp_path, monkeypatch,
                                                                                          capsys):
    path = run_benchmark(tiny_benchmark(), results=tmp_path, runs=tmp_path / "runs", progress=False)
    first, fresh = read_table(path), path.read_text()
    elsewhere = [dataclasses.replace(stamp, hash="e" + stamp.hash[1:]) for stamp in first.stamps()]
    path.write_text("\n".join(header_lines({**first.facts, "cpu": "ELSEWHERE"}, elsewhere,
                                            {cpu_kernels(): first.stamps()})) + "\n" + fresh[fresh.index("arm,seed,"):])
    again = read_table(run_benchmark(tiny_benchmark(), results=tmp_path, runs=tmp_path / "runs", progress=False,
                                     keep_stored=True))
    assert again.facts["kept"].startswith("4 units kept from the table")  # not re-scored from the saved runs
    assert again.rows == first.rows and again.other_cpus == {} and again.facts["cpu"] == cpu_kernels()
    assert f"holds this CPU's stamps ({cpu_kernels()}) only" in capsys.readouterr().out


def test_a_new_score_function_rescores_the_saved_runs_without_training(tmp_path, monkeypatch, capsys):
    first = read_table(run_benchmark(tiny_benchmark(), results=tmp_path, runs=tmp_path / "runs", progress=False))

    def more_scores(model, arm, data):
        scores = tiny_score(model, arm, data)
        scores["test"]["dice_twice"] = 2 * scores["test"]["dice"]
        return scores

    def no_training(*args, **kwargs):
        raise AssertionError("the runner trained instead of loading the saved run")

    monkeypatch.setattr("unet_lessons.benchmark.runner.fit", no_training)
    again = read_table(run_benchmark(tiny_benchmark(score=more_scores), results=tmp_path, runs=tmp_path / "runs",
                                     progress=False))
    assert "loaded from its saved run" in capsys.readouterr().out
    assert [row["seconds"] for row in again.rows] == [row["seconds"] for row in first.rows]  # the training's
    assert again.scores("base", 1, "dice_twice") == pytest.approx(2 * first.scores("base", 1), abs=2e-6)
    # A changed setting names the run differently: it can never load the stale one.
    with pytest.raises(AssertionError, match="trained instead"):
        run_benchmark(tiny_benchmark(base_lr=0.07), results=tmp_path, runs=tmp_path / "runs", progress=False)


def test_a_child_arm_starts_from_its_parents_trained_weights(tmp_path):
    benchmark, data = tiny_benchmark(child_lr=0.0), tiny_data()  # lr 0: the child keeps what it starts from
    assert [arm.name for arm in benchmark.ordered_arms()] == ["base", "fine-tuned"]
    stamps = {stamp.name: stamp for stamp in arm_stamps(benchmark, data)}
    with saved_runs("off"):
        units = _Units(benchmark, data, stamps)
        child, *_ = units.trained(benchmark.arm["fine-tuned"], 1)
    parent = units.states["base", 1, 0]  # (arm, seed, fold): a benchmark without folds has the one fold 0
    child_state = child.state_dict()
    assert set(child_state) - set(parent) == {"extra.weight", "extra.bias"}
    assert all(torch.equal(child_state[k], v) for k, v in parent.items())
    # The child's run name holds its initial weights: another parent, another name.
    model = TinyNet(extra=True)
    name = run_name("tiny", benchmark.arm["fine-tuned"], 1, stamps["fine-tuned"], model)
    load_parent_weights(model, {k: v + 1 for k, v in parent.items()}, arm="fine-tuned", parent="base")
    assert run_name("tiny", benchmark.arm["fine-tuned"], 1, stamps["fine-tuned"], model) != name


def test_parents_are_checked_when_declared_and_when_loaded():
    with pytest.raises(ValueError, match="unknown parent arm for 'b' -> 'nobody'"):
        tiny_benchmark(arms=(Arm("a", {"lr": 0.1}), Arm("b", {"lr": 0.1}, parent="nobody")))
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        tiny_benchmark(arms=(Arm("a", {"lr": 0.1}, parent="b"), Arm("b", {"lr": 0.1}, parent="a")))
    with pytest.raises(ValueError, match="unique"):
        tiny_benchmark(arms=(Arm("a", {"lr": 0.1}), Arm("a", {"lr": 0.2})))
    parent = TinyNet(extra=True).state_dict()
    with pytest.raises(ValueError, match=r"2 weights of 'FCN-32s' that 'FCN-16s' lacks \(extra.bias"):
        load_parent_weights(TinyNet(), parent, arm="FCN-16s", parent="FCN-32s")
    wider = nn.Conv2d(1, 8, 3, padding=1).state_dict()
    with pytest.raises(ValueError, match=r"shapes differ \(features.weight: \(8, 1, 3, 3\) in 'a', \(4, 1, 3, 3\) in 'b'"):
        load_parent_weights(TinyNet(), {f"features.{k}": v for k, v in wider.items()}, arm="b", parent="a")


def test_restamping_needs_a_matching_rerun_of_seed_0_and_keeps_every_row(tmp_path):
    benchmark = tiny_benchmark()
    path = run_benchmark(benchmark, results=tmp_path, runs=tmp_path / "runs", progress=False)
    fresh = path.read_text()
    # The table as older code stored it: other hashes, no fingerprints, other facts.
    body = fresh[fresh.index("arm,seed,"):]
    path.write_text("# commit: 1234567\n# date: 2026-12-01\n# arm: base | hash: 000000000000\n"
                    "# arm: fine-tuned | hash: 111111111111 | parent: base\n" + body)
    lines = body.splitlines()
    seconds = lines[0].split(",").index("seconds")
    rerun = [lines[0]] + [",".join("99.9" if i == seconds else v for i, v in enumerate(line.split(",")))
                          for line in lines[1:] if line.split(",")[1] == "0"]
    verification = tmp_path / "rerun.csv"
    verification.write_text("# commit: unknown\n" + "\n".join(rerun) + "\n")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("# commit: unknown\n" + "\n".join(rerun).replace("base,0,test,0,", "base,0,test,0,7") + "\n")
    with pytest.raises(ValueError, match=r"arm 'base', column 'dice': 1 of 4 rows differ \(largest: test item 0"):
        restamp(benchmark, wrong, results=tmp_path)
    stamped = read_table(restamp(benchmark, verification, results=tmp_path))
    assert path.read_text().endswith(body)  # every row unchanged (the tiny table has "\\n" line endings already)
    assert stamped.facts["commit"] == "1234567" and stamped.facts["date"] == "2026-12-01"
    assert "seed 0 of every arm was re-run" in stamped.facts["restamped"]
    assert check_table(stamped, benchmark) == []


def test_restamping_from_the_older_codes_first_losses(tmp_path):
    import json

    from unet_lessons.benchmark.restamp import compare_losses

    benchmark = tiny_benchmark()
    path = run_benchmark(benchmark, results=tmp_path, runs=tmp_path / "runs", progress=False)
    today = {name: list(fingerprint.losses) for name, fingerprint in read_table(path).fingerprints.items()}
    fresh = path.read_text()
    body = fresh[fresh.index("arm,seed,"):]
    # The table as older code stored it: other hashes, no fingerprints.
    path.write_text("# commit: 1234567\n# arm: base | hash: 000000000000\n"
                    "# arm: fine-tuned | hash: 111111111111 | parent: base\n" + body)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"commit": "abcdef0", "losses": {**today, "base": [v * 1.001 for v in today["base"]]}}))
    with pytest.raises(ValueError, match=r"arm 'base': losses .* from the older code"):
        restamp(benchmark, original_losses=old, results=tmp_path)
    assert "# fingerprint:" not in path.read_text()     # refused: nothing written
    assert compare_losses({"base": [1.0, 2.0, 3.0]}, {"base": (1.0, 2.0, 3.0)}) == []
    assert compare_losses({}, {"base": (1.0,)}) == ["arm 'base': no losses from the older code"]
    old.write_text(json.dumps({"commit": "abcdef0", "losses": today}))
    stamped = read_table(restamp(benchmark, original_losses=old, results=tmp_path))
    assert path.read_text().endswith(body) and stamped.facts["commit"] == "1234567"
    assert "the code of commit abcdef0 gave every arm's first three training losses" in stamped.facts["restamped"]
    assert check_table(stamped, benchmark) == []
    with pytest.raises(ValueError, match="one kind of evidence"):
        restamp(benchmark, results=tmp_path)


def test_another_cpus_stamps_are_added_only_on_matching_evidence_and_read_only_there(tmp_path, monkeypatch):
    """A table made on another kind of CPU ("ELSEWHERE": its float32 fingerprints a per cent off this CPU's, as
    AVX-512's are off AVX2's, and its data digest, so its hashes, other too) fails here until this CPU's stamps
    are added beside its own; a re-stamp drops them again."""
    import json

    from unet_lessons.benchmark import table as table_module
    restamp_module = import_module("unet_lessons.benchmark.restamp")  # the package's `restamp` is the function
    from unet_lessons.benchmark.restamp import stamp_this_cpu

    benchmark = tiny_benchmark()
    path = run_benchmark(benchmark, results=tmp_path, runs=tmp_path / "runs", progress=False)
    here = read_table(path).stamps()
    elsewhere = [dataclasses.replace(stamp, hash="e" + stamp.hash[1:], fingerprint=Fingerprint(
        tuple(v * 1.01 for v in stamp.fingerprint.losses), stamp.fingerprint.scores)) for stamp in here]
    fresh = path.read_text()
    body = fresh[fresh.index("arm,seed,"):]
    facts = {**read_table(path).facts, "cpu": "ELSEWHERE"}
    path.write_text("\n".join(header_lines(facts, elsewhere)) + "\n" + body)
    elsewhere = read_table(path).stamps()  # as written: 9 significant digits
    problems = check_table(read_table(path), benchmark)
    assert any("loss of step 1" in p for p in problems) and any("resolved settings hash" in p for p in problems)

    def evidence(name, stamps, cpu=None, lesson="tiny", commit="abcdef0"):
        file = tmp_path / name
        file.write_text(json.dumps({"lesson": lesson, "commit": commit, "cpu": cpu or cpu_kernels(), "stamps": {
            stamp.name: {"hash": stamp.hash, "fingerprint": stamp.fingerprint.text()} for stamp in stamps}}))
        return file

    before = path.read_text()
    off = [dataclasses.replace(here[0], fingerprint=Fingerprint((here[0].fingerprint.losses[0] * 1.001,
                                                                 *here[0].fingerprint.losses[1:]),
                                                                here[0].fingerprint.scores)), *here[1:]]
    with pytest.raises(ValueError, match=rf"arm '{here[0].name}': loss of step 1"):
        stamp_this_cpu(benchmark, evidence("off.json", off), results=tmp_path)
    with pytest.raises(ValueError, match=rf"arm '{here[1].name}': hash 0"):
        stamp_this_cpu(benchmark, evidence("hash.json", [here[0], dataclasses.replace(here[1], hash="0" * 12)]),
                       results=tmp_path)
    with pytest.raises(ValueError, match="computed with the 'ELSEWHERE' kernels"):
        stamp_this_cpu(benchmark, evidence("other-cpu.json", here, cpu="ELSEWHERE"), results=tmp_path)
    with pytest.raises(ValueError, match="of lesson '04', not 'tiny'"):
        stamp_this_cpu(benchmark, evidence("lesson.json", here, lesson="04"), results=tmp_path)
    with pytest.raises(ValueError, match="names no commit"):
        stamp_this_cpu(benchmark, evidence("no-commit.json", here, commit="not a git checkout"), results=tmp_path)
    with pytest.raises(ValueError, match="are not the code's"):  # a table that lacks an arm the code has
        stamp_this_cpu(tiny_benchmark(arms=(*benchmark.arms, Arm("new", {"lr": 0.02}))), evidence("same.json", here),
                       results=tmp_path)
    assert path.read_text() == before  # refused: nothing written
    stamped = read_table(stamp_this_cpu(benchmark, evidence("same.json", here), results=tmp_path))
    assert path.read_text().endswith(body) and stamped.stamps() == elsewhere  # the rows and the own lines unchanged
    assert "the code of commit abcdef0 gave every arm the same hash" in stamped.facts[f"stamped on {cpu_kernels()}"]
    assert list(stamped.other_cpus) == [cpu_kernels()] and check_table(stamped, benchmark) == []
    assert stale_arms(stamped, benchmark, fingerprint=True) == []
    assert stamped.for_cpu().other_cpus == {} and stamped.for_cpu().for_cpu("ELSEWHERE") == stamped.for_cpu()
    # On the table's own kind of CPU, its own lines are read, as before.
    monkeypatch.setattr(table_module, "cpu_kernels", lambda: "ELSEWHERE")
    monkeypatch.setattr(restamp_module, "cpu_kernels", lambda: "ELSEWHERE")
    assert stamped.for_cpu().hashes == stamped.hashes and check_table(stamped, benchmark) != []
    with pytest.raises(ValueError, match="already this CPU's"):
        stamp_this_cpu(benchmark, evidence("again.json", here, cpu="ELSEWHERE"), results=tmp_path)
    monkeypatch.undo()
    # A re-stamp writes this CPU's stamps as the table's own, and drops the other CPUs' lines and what vouched for them.
    losses = tmp_path / "losses.json"
    losses.write_text(json.dumps({"commit": "abcdef0", "losses": {s.name: list(s.fingerprint.losses) for s in here}}))
    restamped = read_table(restamp(benchmark, original_losses=losses, results=tmp_path))
    assert restamped.other_cpus == {} and not any(key.startswith("stamped on") for key in restamped.facts)
    assert restamped.facts["cpu"] == cpu_kernels() and check_table(restamped, benchmark) == []


def test_the_command_line_refuses_to_restamp_a_lesson_without_a_matching_rerun(tmp_path, monkeypatch, capsys):
    from unet_lessons.benchmark.__main__ import main
    from unet_lessons.benchmark.table import split_table_text

    monkeypatch.chdir(REPO)
    stored = table_path("04").read_text()
    _, body = split_table_text(stored)
    header, first, *rest = body.splitlines()
    dice = header.split(",").index("dice")
    values = first.split(",")
    values[dice] = f"{float(values[dice]) + 0.5:.6f}"
    rerun = tmp_path / "rerun.csv"
    rerun.write_text("\n".join([header, ",".join(values)] + [line for line in rest if line.split(",")[1] == "0"]))
    assert main(["04", "--restamp", str(rerun)]) == 1
    assert f"arm '{values[0]}', column 'dice': 1 of 12 rows differ" in capsys.readouterr().err
    assert table_path("04").read_text() == stored


def test_lesson05_wide_unet_matches_the_official_codes_parameter_ratio_and_cka_needs_the_seed():
    from unet_lessons.benchmark import lesson05
    from unet_lessons.utils import count_parameters

    counts = {arm.name: count_parameters(lesson05.make_model(arm, 0)) for arm in lesson05.ARMS}
    ratio = counts["wide U-Net"] / counts["UNet++, deep supervision"] - 1
    assert abs(ratio - (9_282_246 / 9_041_601 - 1)) < 0.002  # 2.8 % here, 2.7 % in the official code
    model = lesson05.make_model("UNet++, deep supervision", 3)
    assert model.initial_seed == 3
    x = torch.randn(1, 1, 32, 32)
    values = lesson05.concatenation_cka(model, x)
    assert sorted(values) == sorted([f"cka_L{i}" for i in range(4)] + [f"cka_encoder_L{i}" for i in range(4)])
    # Level 3 is wired identically: the skip side the network concatenates is X^{3,0} itself.
    assert values["cka_L3"] == pytest.approx(values["cka_encoder_L3"])
    del model.initial_seed
    with pytest.raises(ValueError, match="make_model"):
        lesson05.cka_scores(model, lesson05.ARM["UNet++, deep supervision"], x)


def test_lesson03_the_2d_arm_is_matched_to_the_3d_arm_in_field_parameters_and_compute():
    from unet_lessons.benchmark import lesson03
    from unet_lessons.summary import model_summary
    from unet_lessons.utils import count_parameters
    from unet_lessons.viz import layer_specs, textbook_receptive_field

    measured = {}
    for name in ("3D, dense labels", "2D slice by slice, matched"):
        settings = lesson03.ARM[name].settings
        model = lesson03.make_model(name, 0)
        shape = (settings["batch"], 1, *[settings["patch"]] * settings["dims"])
        measured[name] = (textbook_receptive_field(layer_specs(model.deepest_path()))[-1]["r"],
                          count_parameters(model), model_summary(model, shape).mult_adds)
    (field_3d, params_3d, adds_3d), (field_2d, params_2d, adds_2d) = measured.values()
    assert field_3d == field_2d == 44
    assert abs(params_2d / params_3d - 1) < 0.01 and abs(adds_2d / adds_3d - 1) < 0.05
    # The 2D arm reads whole axial slices of the training volumes, with the 3D arms' normalisation.
    images = np.zeros((2, 1, 4, 8, 8), dtype=np.float32)
    slices, labels = lesson03.axial_slices(images, np.zeros((2, 4, 8, 8), dtype=np.int64))
    assert slices.shape == (8, 1, 8, 8) and labels.shape == (8, 8, 8)
    changes = lesson03.slice_changes(torch.tensor([[[[1]], [[1]], [[2]], [[0]]]]))  # one volume, 4 slices of 1 voxel
    assert changes.tolist() == [0.5]  # foreground from slice 1 on: slices 1 (same) and 2 (changed)


def test_the_commit_fact_says_whether_the_package_itself_held_uncommitted_changes(tmp_path):
    import subprocess

    from unet_lessons.benchmark.table import _commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "test@example.org")
    git("config", "user.name", "test")
    (tmp_path / "unet_lessons").mkdir()
    (tmp_path / "notebooks" / "results").mkdir(parents=True)
    (tmp_path / "unet_lessons" / "code.py").write_text("x = 1\n")
    (tmp_path / "notebooks" / "lesson.txt").write_text("prose\n")
    git("add", ".")
    git("commit", "-qm", "start")
    results = tmp_path / "notebooks" / "results"       # the runner asks from the results folder
    head = _commit(results)
    assert len(head) >= 7 and " " not in head
    (tmp_path / "notebooks" / "lesson.txt").write_text("more prose\n")
    assert _commit(results) == f"{head}; the package as committed, uncommitted changes to 1 other files"
    (tmp_path / "unet_lessons" / "code.py").write_text("x = 2\n")
    assert _commit(results) == f"{head} with uncommitted changes to the package (unet_lessons/code.py)"
    assert _commit(Path("/")) == "unknown"


def test_a_child_fcn_starts_from_its_parents_learnt_weights_and_builds_its_own_fixed_upsampler():
    from unet_lessons.benchmark import handed_down_state
    from unet_lessons.models import FCN

    torch.manual_seed(0)
    fcn32 = FCN(3, variant="32s", width=2, fc_width=8, norm="batch")
    fcn16 = FCN(3, variant="16s", width=2, fc_width=8, norm="batch")
    handed = handed_down_state(fcn32)
    assert "upscore.weight" in fcn32.state_dict() and "upscore.weight" not in handed  # fixed ×32: never learnt
    assert any("running_mean" in k for k in handed)  # buffers (batch norm statistics) are handed down
    # The whole state, fixed upsampler included, is refused: the child has no ×32 upsampler.
    with pytest.raises(ValueError, match="upscore.weight"):
        load_parent_weights(fcn16, fcn32.state_dict(), arm="FCN-16s", parent="FCN-32s")
    left = load_parent_weights(fcn16, handed, arm="FCN-16s", parent="FCN-32s")
    assert sorted(left) == sorted(k for k in fcn16.state_dict() if k not in handed)
    assert all(k.startswith(("upscore2", "score_pool4", "upscore16")) for k in left)
    assert torch.equal(fcn16.state_dict()["score_fr.weight"], fcn32.state_dict()["score_fr.weight"])


def test_lesson01_each_skip_and_its_control_see_the_same_batches_and_the_fixed_arms_freeze_their_x2():
    from unet_lessons.benchmark import lesson01

    rng = np.random.default_rng(0)
    data = {"train_images": rng.random((12, 3, 128, 128), dtype=np.float32),
            "train_labels": rng.integers(0, 5, (12, 128, 128))}
    first = {name: next(iter(lesson01.make_sampler(lesson01.ARM[name], 3, data)))[0]
             for name in ("FCN-32s", "FCN-16s", "FCN-32s, continued", "FCN-8s", "FCN-16s, continued")}
    assert torch.equal(first["FCN-16s"], first["FCN-32s, continued"])     # the pool4 skip and its control
    assert torch.equal(first["FCN-8s"], first["FCN-16s, continued"])      # the pool3 skip and its control
    assert not torch.equal(first["FCN-32s"], first["FCN-16s"])            # each stage draws new batches
    for name, frozen in [("FCN-8s", False), ("FCN-8s, fixed ×2", True), ("FCN-16s, fixed ×2", True)]:
        model = lesson01.make_model(name, 0)
        ups = [model.upscore2] + ([model.upscore_pool4] if model.variant == "8s" else [])
        assert all(up.weight.requires_grad != frozen for up in ups), name
    steps = {arm.name: sum(a.settings["steps"] for a in lesson01.BENCHMARK.lineage(arm)) for arm in lesson01.ARMS}
    assert steps["FCN-16s"] == steps["FCN-32s, continued"] and steps["FCN-8s"] == steps["FCN-16s, continued"]
    assert steps["FCN-8s"] == steps["FCN-8s, at once"] == steps["FCN-8s, fixed ×2"] == 600


def tiny_folds(data):
    """The six tiny images in two folds of three: each fold trains on the other three."""
    images = np.concatenate([data["train_images"], data["test_images"]])
    labels = np.concatenate([data["train_labels"], data["test_labels"]])
    views = []
    for test in (np.array([3, 4, 5]), np.array([0, 1, 2])):
        train = np.setdiff1d(np.arange(len(labels)), test)
        views.append(dict(train_images=images[train], train_labels=labels[train], test_images=images[test],
                          test_labels=labels[test], held_out_items=test))
    return views


def test_folds_hold_every_item_out_once_and_each_score_comes_from_the_fold_that_held_it_out(tmp_path):
    from unet_lessons.train import fit

    benchmark = dataclasses.replace(tiny_benchmark(arms=(Arm("base", {"lr": 0.05}),)), folds=tiny_folds)
    table = read_table(run_benchmark(benchmark, results=tmp_path / "results", runs=tmp_path / "runs", progress=False))
    data = tiny_data()
    for seed in benchmark.seeds:
        assert len(table.scores("base", seed, "dice")) == 6  # every item once, at its own position
        for view in tiny_folds(data):  # train each fold again by hand: its items hold its scores
            model, batches, loss, config = benchmark.make_arm("base", seed, view)
            fit(model, batches, loss, config)
            expected = tiny_score(model, None, view)["test"]["dice"]
            np.testing.assert_allclose(table.scores("base", seed, "dice")[view["held_out_items"]], expected, atol=1e-6)
    runs = {path.name for path in (tmp_path / "runs").rglob("*fold*")}
    assert any("fold0" in name for name in runs) and any("fold1" in name for name in runs), runs
    # A split that leaves an item out, or holds one out twice, is refused by name.
    missing = lambda data: tiny_folds(data)[:1]  # noqa: E731
    with pytest.raises(ValueError, match="every item exactly once"):
        dataclasses.replace(benchmark, folds=missing).fold_views(data)


def test_lesson02_each_arm_lacks_one_ingredient_and_the_rest_is_the_same():
    from unet_lessons.benchmark import lesson02
    from unet_lessons.losses import unet_weight_map

    rng = np.random.default_rng(0)
    labels = np.zeros((30, 128, 128), np.int64)
    labels[:, 10:60, 10:60] = labels[:, 10:60, 64:120] = labels[:, 70:120, 10:120] = 1  # three cells, thin gaps
    data = {"images": rng.random((30, 128, 128), dtype=np.float32), "labels": labels,
            "weights": np.stack([unet_weight_map(label) for label in labels]),
            "bands": np.zeros((30, 128, 128), bool)}
    views = lesson02.folds(data)
    assert [list(view["held_out_items"]) for view in views] == [list(range(0, 10)), list(range(10, 20)),
                                                                  list(range(20, 30))]
    assert all(len(view["train_labels"]) == 20 for view in views)
    first = {arm.name: next(iter(lesson02.make_sampler(arm, 3, views[0]))) for arm in lesson02.ARMS}
    reference = first[lesson02.REFERENCE]
    for name in ("without skips", "without the weight map", "without the border term"):  # the same patches
        assert torch.equal(first[name]["image"], reference["image"]), name
    assert torch.equal(first["without skips"]["weight"], reference["weight"])
    torch.testing.assert_close(first["without the weight map"]["weight"], torch.ones_like(reference["weight"]))
    balance = first["without the border term"]["weight"]  # w_c only: within the class weights, never the border's
    class_only = lesson02.training_weights(lesson02.ARM["without the border term"], views[0])
    assert class_only.max() <= views[0]["train_weights"].max() - 1  # the gaps' border term is gone
    assert balance.min() >= class_only.min() - 1e-5 and balance.max() <= class_only.max() + 1e-5
    assert lesson02.make_sampler(lesson02.ARM["without elastic deformation"], 3, views[0]).elastic_sigma == 0
    assert lesson02.make_model("without skips", 0).knocked_out_skips() == {level: "zero" for level in range(4)}
    assert lesson02.make_model(lesson02.REFERENCE, 0).knocked_out_skips() == {}
    differing = {name: {k for k, v in arm.settings.items() if v != lesson02.ARM[lesson02.REFERENCE].settings[k]}
                 for name, arm in lesson02.ARM.items()}
    assert all(len(keys) == 1 for name, keys in differing.items() if name != lesson02.REFERENCE), differing
