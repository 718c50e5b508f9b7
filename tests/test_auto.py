"""method=auto (sdnn/auto.py): the candidates trained from one phase 1 and chosen on validation, on hand-made data
whose answer is known; the guard against slow references; determinism, resume between candidates, the errors."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from tests.conftest import QUICK_GUARD, ROOT, compose_config, run_cli

QUIET = ["logger=none", "trainer.enable_progress_bar=false", "observe.figures=false", "observe.norms_every=0",
         "observe.per_class_test_acc=false"]
SHORT = ["phase1.epochs=3", "trainer.max_epochs=8", "optim.lr=0.1", "scheduler.milestones=[6]",
         "dataset.batch_size=64", "model=lr", "checkpoint.every_n_epochs=0", "auto.folds=1", *QUIET]


def write_blobs(path, multimodal: bool, seed: int = 0, per_class: int = 300, with_val: bool = True, width: int = 4):
    """Three classes in the plane (padded to 4 features; ``width`` > 4: the plane's coordinates mixed into that
    many, with a little noise). ``multimodal``: class 0 is two blobs on either side of class 1's one, which no
    hyperplane separates, and which class 0's subclasses (its blobs) let a linear head tell apart; else one
    well-separated blob a class (nothing for subclasses to buy)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((2, width)) / np.sqrt(2) if width > 4 else None  # the default data's draws as before
    if multimodal:
        centres = [[(-5, 0), (5, 0)], [(0, 0)], [(0, 6)]]
    else:
        centres = [[(-5, 0)], [(0, 3)], [(5, 0)]]

    def draw(n):
        x, y = [], []
        for label, modes in enumerate(centres):
            for mode in range(n):
                x.append(np.r_[np.asarray(modes[mode % len(modes)]) + 0.8 * rng.standard_normal(2),
                               rng.standard_normal(2)])
                y.append(label)
        order = rng.permutation(len(y))
        x = np.asarray(x)
        if width > 4:
            x = x[:, :2] @ mixing + 0.3 * rng.standard_normal((len(x), width))
        return x.astype(np.float32)[order], np.asarray(y, dtype=np.int64)[order]

    arrays = {}
    for split, n in (("train", per_class), ("test", per_class // 2)) + ((("val", per_class // 2),) if with_val else ()):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = draw(n)
    np.savez(path, **arrays)
    return path


def _auto(tmp_path, data, extra=(), name="run"):
    from sdnn.app import run

    cfg = compose_config([f"dataset=npz", f"dataset.path={data}", "method=auto", *SHORT,
                          f"phase1.cache_dir={tmp_path / 'cache'}", *extra])
    return run(cfg, tmp_path / name).to_json()


def test_auto_picks_sdnn_where_a_class_is_two_modes(tmp_path, monkeypatch):
    import sdnn.assess
    import sdnn.auto  # noqa: F401 — binds the real split_indicators for the guard before the patch

    recomputed = []  # the candidates' runs report the indicators auto computed for its guard, not their own again
    monkeypatch.setattr(sdnn.assess, "split_indicators", lambda *a: recomputed.append(a))
    results = _auto(tmp_path, write_blobs(tmp_path / "modes.npz", multimodal=True))
    assert not recomputed and results["split_indicators"]["probe"]["delta"] > 10
    auto = results["auto"]
    assert auto["chosen"].startswith("sdnn-k"), auto["why"]
    chosen = auto["candidates"][auto["chosen"]]
    assert chosen["val_gain"] > 0.05 and chosen["lower"] > 0 and chosen["expected"][1] > 10
    assert results["method"] == "auto" and 0 in results["selected_classes"]
    assert results["val"]["acc"] == pytest.approx(chosen["val_acc"])
    # the chosen network is the run's model, and its test accuracy the one test of the run
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert card["subclass_to_class"] == results["subclass_to_class"] and len(results["subclass_to_class"]) > 3
    assert list(auto["candidates"]) == ["baseline", "reweight", "sdnn-k1", "sdnn-k2"]  # sdnn-k3: 3 classes only
    for k in (1, 2):  # each candidate is a run of its own in auto/<name>/
        assert len(json.loads((tmp_path / "run" / "auto" / f"sdnn-k{k}" / "subclasses.json").read_text())
                   ["settings"]["classes"]) == k


def test_the_docs_replay_of_a_choice_with_the_same_lines_is_the_choice(tmp_path):
    """docs/payoff/replay_auto.py (docs/reproduction.md): a study's finished auto run, its configuration composed
    again from the study, the guard applied anew to its recorded validation results with the calibration it ran
    with, gives its choice and its candidates' combined gains."""
    import importlib.util

    from sdnn.catalogue import adhoc_study
    from sdnn.study import run_study
    from sdnn.verdict import CALIBRATION

    data = write_blobs(tmp_path / "modes.npz", multimodal=True)
    study = adhoc_study(["dataset=npz", f"dataset.path={data}", *SHORT], "replay")
    run_study(study, tmp_path / "study", seeds=[0], variants=["auto"])
    spec = importlib.util.spec_from_file_location("replay_auto", ROOT / "docs" / "payoff" / "replay_auto.py")
    replay_auto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay_auto)
    recorded_choice, choice, records = replay_auto.replay(study, tmp_path / "study", 0, CALIBRATION)
    recorded = json.loads((tmp_path / "study" / "runs" / "auto-auto" / "seed0" / "results.json").read_text())
    assert choice == recorded_choice == recorded["auto"]["chosen"] and choice.startswith("sdnn-k")
    assert set(records) == set(recorded["auto"]["candidates"])
    for name in set(records) - {"baseline"}:
        for key in ("gain", "gain_sd", "lower"):
            assert records[name][key] == pytest.approx(recorded["auto"]["candidates"][name][key], rel=1e-6)


def test_the_studys_recorded_command_continues_it_with_its_calibration(tmp_path):
    """study.json's ``command`` runs or continues the study: with ``--calibration`` its auto runs ran with that
    calibration, so the command names it (without it the finished runs would be of other settings)."""
    import shlex

    from sdnn.catalogue import adhoc_study
    from sdnn.study import main, run_study
    from sdnn.verdict import CALIBRATION

    data = write_blobs(tmp_path / "modes.npz", multimodal=True, per_class=60)
    study = adhoc_study(["dataset=npz", f"dataset.path={data}", *SHORT], "calibrated")
    report = run_study(study, tmp_path / "study", seeds=[0], variants=["auto"], calibration=CALIBRATION)
    argv = shlex.split(report["command"])
    assert argv[:3] == ["python", "-m", "sdnn.study"] and argv[argv.index("--calibration") + 1] == str(CALIBRATION)
    stamp = (tmp_path / "study" / "runs" / "auto-auto" / "seed0" / "results.json").stat().st_mtime_ns
    assert main(argv[3:]) == 0
    assert (tmp_path / "study" / "runs" / "auto-auto" / "seed0" / "results.json").stat().st_mtime_ns == stamp


def test_the_docs_seed_groups_compute_the_targets_as_the_payoff_does(tmp_path):
    """docs/payoff/auto_seeds.py (docs/reproduction.md, "Ten seeds") on a hand-made study folder (study.json, the
    auto runs' results.json): per seed group the best candidate, auto's share of its gain and what the comparison
    detects, against a hand computation; a seed without an auto run is a one-line error."""
    import importlib.util

    per_seed = {"main": [0, 0, 0, 0], "reweight": [-0.01] * 4, "k=1": [0.005] * 4, "k=3": [0.01, 0.01, 0.02, 0.0],
                "auto": [0.01, 0.0, 0.02, 0.0]}
    overrides = {"k=1": ["subclass.num_classes_to_repartition=1"], "k=3": ["subclass.num_classes_to_repartition=3"]}
    variants = {name: {"seeds": [0, 1, 2, 3], "test": {"diff_per_seed": diffs}, "overrides": overrides.get(name, []),
                       "method": {"reweight": "reweight", "auto": "auto"}.get(name, "sdnn")}
                for name, diffs in per_seed.items()}
    variants["auto"]["auto"] = {str(s): {"chosen": c} for s, c in enumerate(["sdnn-k3", "baseline", "sdnn-k3",
                                                                             "baseline"])}
    (tmp_path / "study.json").write_text(json.dumps({"study": "hand", "settings": {"num_classes_to_repartition": 2},
                                                     "variants": variants}))
    prior_sd = 0.02 / (2 * 1.2816)   # seed 2 ran with an expectation of +1 [0, +2] points
    sd = np.sqrt(1 / (1 / 0.004 ** 2 + 1 / prior_sd ** 2))
    weight = sd ** 2 / 0.004 ** 2
    with_prior = (1.2816 * sd - (1 - weight) * 0.01) / weight + 0.8416 * 0.004
    for seed in range(4):
        record = {"val_gain_se": 0.004, "gain": 0.0, "gain_sd": 0.004, "expected": None}
        record.update({2: {"gain_sd": sd, "expected": [0.0, 1.0, 2.0]}, 3: {"detectable": 0.02}}.get(seed, {}))
        folder = tmp_path / "runs" / "auto-auto" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"config": {"auto": {"confidence": 0.9}},
                                                         "auto": {"candidates": {"sdnn-k3": record}}}))
    spec = importlib.util.spec_from_file_location("auto_seeds", ROOT / "docs" / "payoff" / "auto_seeds.py")
    auto_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(auto_seeds)
    first, everything = auto_seeds.cell_rows(tmp_path, ["0-1", "0-3"])
    # seeds 0-1: k = 3 +1.00 ± 0.00 pays, auto +0.50 → 50%; the comparison detects (z_0.9 + z_0.8) × 0.4 points
    assert "| 0-1 | k=3: +1.00 ± 0.00 |" in first and first.endswith("| yes | 50% |")
    assert f"| {(1.2816 + 0.8416) * 0.4:.2f} |" in first
    # seeds 0-3: k = 3 +1.00 ± 0.82 still pays; auto +0.75 → 75%; seed 2's through its expectation, seed 3's as
    # recorded (2 points)
    assert "| 0-3 | k=3: +1.00 ± 0.82 |" in everything and everything.endswith("| yes | 75% |")
    assert f"| {(2 * (1.2816 + 0.8416) * 0.4 + 100 * with_prior + 2) / 4:.2f} |" in everything
    assert "(sdnn-k3 ×2, baseline ×2)" in everything
    with pytest.raises(SystemExit, match=r"no auto run for seed\(s\) \[4\]"):
        auto_seeds.cell_rows(tmp_path, ["0-4"])


def test_the_docs_confidence_replay_computes_the_targets_of_each_level(tmp_path):
    """docs/payoff/auto_confidence.py (docs/reproduction.md, "The guard's confidence") on a hand-made study folder:
    the choice at each level from the recorded gains, its Δ test from the study's run of that candidate (main is
    the study's k = 2; a variant of other overrides is not a candidate), the targets against a hand computation; a
    candidate the study did not run is unknown; a record whose replay at its own level differs is an error."""
    import importlib.util

    per_seed = {"main": [0.0, 0.0], "reweight": [0.0, -0.01], "k=1": [0.01, 0.0], "k=3": [0.02, 0.015],
                "partitioner=random": [0.05, 0.05], "auto": [0.02, 0.0]}
    overrides = {"k=1": ["subclass.num_classes_to_repartition=1"], "k=3": ["subclass.num_classes_to_repartition=3"],
                 "partitioner=random": ["partitioner=random"], "auto": ["auto.skip_hopeless=false"]}
    variants = {name: {"seeds": [0, 1], "test": {"diff_per_seed": diffs}, "overrides": overrides.get(name, []),
                       "method": {"reweight": "reweight", "auto": "auto"}.get(name, "sdnn")}
                for name, diffs in per_seed.items()}
    report = {"study": "hand", "settings": {"num_classes_to_repartition": 2}, "variants": variants}
    (tmp_path / "study.json").write_text(json.dumps(report))

    def record(gain, sd):
        return {"val_gain": gain, "val_gain_se": sd, "gain": gain, "gain_sd": sd, "expected": None}
    # seed 0: k = 3 (+2 ± 1) passes up to 0.95, k = 1 (+1 ± 0.4) at 0.99 too; seed 1: reweight (+0.5 ± 0.4) up to 0.8
    runs = {0: ("sdnn-k3", {"sdnn-k1": record(0.01, 0.004), "sdnn-k3": record(0.02, 0.01)}),
            1: ("baseline", {"reweight": record(0.005, 0.004), "sdnn-k2": {"skipped": "expected Δ below 0"}})}
    for seed, (chosen, candidates) in runs.items():
        folder = tmp_path / "runs" / "auto-auto" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"config": {"auto": {"confidence": 0.95}}, "auto": {
            "chosen": chosen, "candidates": {"baseline": {"val_acc": 0.9}, **candidates}}}))
    from sdnn.payoff import candidate_variants, seed_group

    assert seed_group("10-12") == [10, 11, 12] and seed_group("3") == [3]
    spec = importlib.util.spec_from_file_location("auto_confidence", ROOT / "docs" / "payoff" / "auto_confidence.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert candidate_variants(report) == {"baseline": "baseline", "sdnn-k2": "main", "reweight": "reweight",
                                                 "sdnn-k1": "k=1", "sdnn-k3": "k=3"}
    replayed = script.replay(tmp_path, [0.5, 0.9, 0.95, 0.99], [0, 1])
    levels = replayed["levels"]
    assert [levels[level]["chosen"] for level in (0.5, 0.9, 0.99)] == [
        {0: "sdnn-k3", 1: "reweight"}, {0: "sdnn-k3", 1: "baseline"}, {0: "sdnn-k1", 1: "baseline"}]
    assert replayed["best"] == ("sdnn-k3", 1.75, pytest.approx(np.std([2, 1.5], ddof=1)))
    # 0.5: +2 and -1 → +0.50 ± 2.12, 29%; 0.95: +2 and 0 → +1.00 ± 1.41, 57%; 0.99: +1 and 0 → 29%
    assert levels[0.5]["measured"] == pytest.approx((0.5, np.std([2, -1], ddof=1)))
    assert levels[0.95]["share_of_best"] == pytest.approx(1 / 1.75) and levels[0.95]["never_worse"]
    assert levels[0.99]["share_of_best"] == pytest.approx(0.5 / 1.75)
    line = script.row(replayed, "0-1")
    assert line.startswith("| hand | 0-1 | sdnn-k3: +1.75 ± 0.35 | +0.50 ± 2.12 (29%) | +1.00 ± 1.41 (57%) |")
    del report["variants"]["k=1"]
    (tmp_path / "study.json").write_text(json.dumps(report))
    worse = {"study": "hand", "best": ("sdnn-k3", 1.0, 0.1), "levels": {0.5: {
        "chosen": {0: "reweight"}, "measured": (-0.5, 0.1), "never_worse": False, "pays": True, "share_of_best": -0.5}}}
    assert script.row(worse, "0").endswith("| -0.50 ± 0.10 **worse** |")
    unknown = script.row(script.replay(tmp_path, [0.99], [0, 1]), "0-1")
    assert unknown.endswith("| unknown (baseline, sdnn-k1 not run) |")
    results = tmp_path / "runs" / "auto-auto" / "seed1" / "results.json"
    results.write_text(results.read_text().replace('"chosen": "baseline"', '"chosen": "reweight"'))
    with pytest.raises(SystemExit, match="seed 1: the replay at the run's own confidence 0.95 does not give"):
        script.replay(tmp_path, [0.5], [0, 1])
    with pytest.raises(SystemExit, match=r"no auto run for seed\(s\) \[2\]"):
        script.replay(tmp_path, [0.5], [0, 1, 2])
    report["variants"]["auto"]["test"]["diff_per_seed"] = [0.01, 0.0]   # not what the study's k = 3 run scored
    (tmp_path / "study.json").write_text(json.dumps(report))
    with pytest.raises(SystemExit, match=r"seed 0: auto's Δ test \+1.00 is not the study's run of its choice"):
        script.replay(tmp_path, [0.5], [0])


def test_auto_keeps_the_baseline_where_nothing_beats_it(tmp_path):
    results = _auto(tmp_path, write_blobs(tmp_path / "blobs.npz", multimodal=False))
    auto = results["auto"]
    assert auto["chosen"] == "baseline", auto["why"]
    assert all(r.get("lower", -1) <= 0 for n, r in auto["candidates"].items() if n != "baseline")
    assert results["subclass_to_class"] == [0, 1, 2] and "no candidate" in auto["why"]


def test_auto_is_deterministic_and_resumes_between_candidates_to_the_same_choice(tmp_path, monkeypatch):
    """A run interrupted after its first candidate, run again in its folder, ends as an uninterrupted one."""
    import sdnn.auto
    from sdnn.config import Method
    from sdnn.errors import Interrupted

    data = write_blobs(tmp_path / "modes.npz", multimodal=True, seed=1)
    resumable = ["checkpoint.every_n_epochs=1", "auto.candidates=[baseline,reweight,sdnn-k1]"]
    whole = _auto(tmp_path, data, resumable, name="whole")
    again = _auto(tmp_path, data, resumable, name="again")

    assert _strip(whole) == _strip(again)

    original = sdnn.auto.RECIPE[Method.reweight]

    def killed(job):
        raise KeyboardInterrupt

    monkeypatch.setitem(sdnn.auto.RECIPE, Method.reweight, killed)
    with pytest.raises(Interrupted):
        _auto(tmp_path, data, resumable, name="killed")
    assert (tmp_path / "killed" / "auto" / "baseline" / "baseline" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "killed" / "results.json").exists()
    monkeypatch.setitem(sdnn.auto.RECIPE, Method.reweight, original)
    resumed = _auto(tmp_path, data, resumable, name="killed")
    assert _strip(resumed) == _strip(whole)


def test_a_fold_holds_out_its_part_of_train_and_trains_on_the_rest_and_the_validation_split():
    import torch

    from dataclasses import replace

    from sdnn.data.tensors import TensorSplits, fold_count_limit, fold_splits

    n_train, n_val = 23, 5
    ids = torch.arange(n_train + n_val)  # each observation's identity, as its single feature
    splits = TensorSplits(ids[:n_train, None].float(), ids[:n_train] % 3, ids[:2, None].float(), ids[:2] % 3, 3,
                          x_val=ids[n_train:, None].float(), y_val=ids[n_train:] % 3, fine_train=ids[:n_train] % 6,
                          fine_val=ids[n_train:] % 6)
    no_val = TensorSplits(splits.x_train, splits.y_train, splits.x_test, splits.y_test, 3)
    assert fold_count_limit(splits) == 5 and fold_count_limit(no_val) == 1
    held_out = []
    for fold in (2, 3, 4, 5):  # 1 + 23 // 5 folds: the run's own split and four parts of train
        f = fold_splits(splits, fold, seed=7)
        train, val = f.x_train[:, 0].long(), f.x_val[:, 0].long()
        assert len(val) == n_val and sorted(train.tolist() + val.tolist()) == list(range(n_train + n_val))
        assert set(range(n_train, n_train + n_val)) <= set(train.tolist())  # the validation split is trained on
        assert (f.y_train == train % 3).all() and (f.y_val == val % 3).all()
        assert (f.fine_train == train % 6).all() and (f.fine_val == val % 6).all()
        assert f.x_test is splits.x_test
        held_out.append(set(val.tolist()))
        assert fold_splits(splits, fold, seed=7).x_val.equal(f.x_val)  # seeded
    assert all(not (a & b) for i, a in enumerate(held_out) for b in held_out[i + 1:])  # disjoint parts of train
    for fold in (1, 6):
        with pytest.raises(ValueError, match="fold .: folds 2 to 5 exist"):
            fold_splits(splits, fold, seed=7)
    with pytest.raises(ValueError, match="fold 2: no fold beyond the first exists"):
        fold_splits(replace(splits, x_val=None, y_val=None, fine_val=None), 2, seed=7)


@pytest.mark.parametrize("n_val, n_train, wanted, folds", [
    (189, 1068, "auto", 5),    # digits: 1000 / 189 -> 6 folds, at most 5
    (450, 900, "auto", 3),     # 1000 / 450 -> 3, and train holds two more parts
    (300, 400, "auto", 2),     # train holds one more part only
    (300, 200, "auto", 1),     # and here none
    (1000, 9000, "auto", 1),   # enough held-out observations already
    (5000, 10000, "auto", 1),
    (189, 1068, 2, 2),
])
def test_how_many_folds(n_val, n_train, wanted, folds):
    from types import SimpleNamespace

    from sdnn.auto import fold_count
    from sdnn.config import AutoConfig

    data = SimpleNamespace(validation_size=n_val, max_folds=lambda: 1 + n_train // n_val)
    job = SimpleNamespace(settings=SimpleNamespace(auto=AutoConfig(folds=wanted)), data=data)
    count, why = fold_count(job)
    assert count == folds and (str(n_val) in why if wanted == "auto" else why == f"auto.folds={wanted}")


def test_auto_cross_validates_a_small_validation_split_and_resumes_inside_a_fold(tmp_path, monkeypatch):
    """auto.folds=auto on 180 validation observations: 3 folds (the run's split and two parts of train), each with
    its own phase 1 and candidates; the gains pooled over the folds; a run killed inside fold 2 and run again ends
    as an uninterrupted one."""
    import sdnn.auto
    from sdnn.config import Method
    from sdnn.errors import Interrupted

    data = write_blobs(tmp_path / "modes.npz", multimodal=True, per_class=120, seed=2)
    folds = ["auto.folds=auto", "checkpoint.every_n_epochs=1", "auto.candidates=[baseline,sdnn-k1]"]
    whole = _auto(tmp_path / "w", data, folds)
    auto = whole["auto"]
    assert auto["folds"]["count"] == 3 and auto["folds"]["held_out"] == 3 * 180 and "3 folds of 180" in \
        auto["folds"]["why"]
    k1 = auto["candidates"]["sdnn-k1"]
    assert len(k1["fold_gains"]) == 3 and k1["val_gain"] == pytest.approx(np.mean(k1["fold_gains"]))  # equal parts
    assert auto["chosen"] == "sdnn-k1" and k1["val_gain"] > 0.1, auto["why"]
    for fold in (2, 3):  # a run of its own: phase 1 (cached under its own key) and the candidates
        assert (tmp_path / "w" / "run" / "auto" / f"fold-{fold}" / "sdnn-k1" / "subclasses.json").is_file()
    assert len(list((tmp_path / "w" / "cache").iterdir())) == 3
    assert not (tmp_path / "w" / "run" / "auto" / "fold-2" / "results.json").exists()

    original = sdnn.auto.RECIPE[Method.sdnn]

    def killed_in_fold_2(job):
        if "fold-2" in str(job.run_dir):
            raise KeyboardInterrupt
        return original(job)

    monkeypatch.setitem(sdnn.auto.RECIPE, Method.sdnn, killed_in_fold_2)
    with pytest.raises(Interrupted):
        _auto(tmp_path / "k", data, folds)
    assert (tmp_path / "k" / "run" / "auto" / "fold-2" / "baseline" / "baseline" / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setitem(sdnn.auto.RECIPE, Method.sdnn, original)
    resumed = _auto(tmp_path / "k", data, folds)
    assert _strip(resumed) == _strip(whole)


def _strip(results):
    """Results without what differs between two runs of the same settings (times, folders, cache use)."""
    skip = {"seconds", "train_seconds", "partition_seconds", "cache_dir", "origin", "cached"}

    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items() if k not in skip}
        return [walk(v) for v in value] if isinstance(value, list) else value
    return walk(results)


def _job(**auto):
    from types import SimpleNamespace

    from sdnn.config import AutoConfig

    return SimpleNamespace(settings=SimpleNamespace(auto=AutoConfig(**auto)), seed=0)


def test_the_guard_chooses_only_a_gain_clear_of_the_noise():
    from sdnn.auto import choose

    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.8).astype(float)
    clear = base.copy()
    clear[np.flatnonzero(base == 0)[:40]] = 1  # 40 more right, none worse: +10 points
    slight = base.copy()
    slight[np.flatnonzero(base == 0)[:2]] = 1  # +0.5 points: 2 observations
    job = _job(prior=False)
    chosen, records, why = choose({"baseline": base, "reweight": slight, "sdnn-k1": clear}, job, {})
    assert chosen == "sdnn-k1" and records["sdnn-k1"]["val_gain"] == pytest.approx(0.1)
    chosen, records, why = choose({"baseline": base, "reweight": slight}, job, {})
    assert chosen == "baseline" and "clear of the noise" in why
    chosen, _, _ = choose({"baseline": base, "sdnn-k2": 1 - base}, job, {})
    assert chosen == "baseline"
    chosen, _, _ = choose({"baseline": base, "sdnn-k1": clear, "sdnn-k2": clear.copy()}, job, {})
    assert chosen == "sdnn-k1"  # equal: the first listed


@pytest.mark.parametrize("prior", [False, True])
def test_rechoose_gives_what_the_guard_would_have_chosen_at_another_confidence(prior):
    """``rechoose`` on a run's records (a JSON round trip, a skipped candidate among them) equals ``choose`` run
    again with that confidence, at every level: the levels chosen so that the choice changes between them."""
    import json

    from sdnn.auto import choose, rechoose

    rng = np.random.default_rng(1)
    base = (rng.random(600) < 0.8).astype(float)
    wrong, right = np.flatnonzero(base == 0), np.flatnonzero(base == 1)

    def changed(up, down):   # ``up`` more observations right, ``down`` fewer
        hits = base.copy()
        hits[wrong[:up]], hits[right[:down]] = 1, 0
        return hits
    scores = {"baseline": base, "reweight": changed(6, 4), "sdnn-k1": changed(12, 0), "sdnn-k2": changed(50, 30)}
    expected = {"reweight": (-1.0, 0.2, 1.4), "sdnn-k1": (-0.5, 0.5, 1.5), "sdnn-k2": (-1.0, 1.0, 3.0)}
    _, records, _ = choose(scores, _job(prior=prior, confidence=0.95), expected)
    recorded = json.loads(json.dumps({**records, "sdnn-k3": {"skipped": "expected Δ below 0"}}))
    choices = set()
    for level in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        again, _, why = choose(scores, _job(prior=prior, confidence=level), expected)
        assert rechoose(recorded, level) == (again, why)
        choices.add(again)
    assert len(choices) >= 2, choices   # the levels tell candidates apart, so the test can fail
    assert rechoose({"baseline": {"val_acc": 0.8}}, 0.5)[0] == "baseline"


@pytest.mark.parametrize("expected", [None, (0.0, 1.0, 2.0)])
def test_the_detectable_gain_is_found_four_times_in_five(expected):
    """``detectable``: a true gain of that size, drawn again and again (paired observations, +1/0/-1), passes the
    guard in about 80% of the draws, and half of it as often as the normal model says; without an expectation it is
    (z_0.95 + z_0.8) × se, with one (+1 [0, +2] points, a strong pull towards +1) the threshold that the precision
    weighting puts on the held-out gain; a kept baseline says how fine the comparison was."""
    from sdnn.auto import choose

    n, p_worse, z, z80 = 1000, 0.03, 1.6449, 0.8416
    prior_var = ((expected[2] - expected[0]) / 100 / (2 * 1.2816)) ** 2 if expected else np.inf

    def cut_at(se):  # the held-out gain above which the guard passes, under the normal model
        weight = (1 / se ** 2) / (1 / se ** 2 + 1 / prior_var)
        sd = np.sqrt(1 / (1 / se ** 2 + 1 / prior_var))
        mid = expected[1] / 100 if expected else 0.0
        return (z * sd - (1 - weight) * mid) / weight

    def threshold(gain):  # that cut and the se of a held-out gain of this size
        se = np.sqrt((2 * p_worse + gain - gain ** 2) / n)
        return cut_at(se), se

    def detectable(gain):  # an independent solution of P(pass) = 0.8
        cut, se = threshold(gain)
        return cut + z80 * se

    def power(gain):
        cut, se = threshold(gain)
        return NormalDist().cdf((gain - cut) / se)

    gain = 0.02
    for _ in range(50):  # the gain that is its own detectable gain
        gain = detectable(gain)
    rng = np.random.default_rng(3)
    job, prior = _job(prior=expected is not None), {"sdnn-k1": expected} if expected else {}

    def passes(true_gain, draws=2000):
        hits = 0
        for _ in range(draws):
            u = rng.random(n)
            diff = (u < p_worse + true_gain).astype(float) - (u > 1 - p_worse)  # +1, -1 or 0 per observation
            base = np.zeros(n)
            base[diff < 0] = 1
            chosen, records, _ = choose({"baseline": base, "sdnn-k1": base + diff}, job, prior)
            hits += chosen == "sdnn-k1"
        return hits / draws, records["sdnn-k1"]

    rate, record = passes(gain)
    assert 0.76 < rate < 0.84
    assert record["detectable"] == pytest.approx(gain, rel=0.1)  # from one draw's se
    se = record["val_gain_se"]
    assert record["detectable"] == pytest.approx(cut_at(se) + z80 * se, rel=1e-3)
    if expected is None:
        assert record["detectable"] == pytest.approx((z + z80) * record["gain_sd"], rel=1e-3)
    half = passes(gain / 2)[0]
    assert half < 0.5 and abs(half - power(gain / 2)) < 0.04
    base = (rng.random(400) < 0.8).astype(float)
    slight = base.copy()
    slight[np.flatnonzero(base == 0)[:2]] = 1
    chosen, records, why = choose({"baseline": base, "reweight": slight}, _job(prior=False), {})
    assert chosen == "baseline"
    assert f"detects a gain of {100 * records['reweight']['detectable']:.2f} points or more 80% of the time" in why


def test_the_summary_table_shows_each_candidates_evidence_and_what_it_detects():
    """The run summary's auto table: per candidate its validation accuracy, gain, combined gain, bound and
    detectable gain (in points), the chosen one marked, and why; a record from before ``detectable`` existed
    leaves that cell empty."""
    from sdnn.auto import choose
    from sdnn.results import _auto_lines

    rng = np.random.default_rng(2)
    base = (rng.random(400) < 0.8).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:40]] = 1
    chosen, records, why = choose({"baseline": base, "reweight": base.copy(), "sdnn-k1": better},
                                  _job(prior=False), {})
    records["reweight"].pop("detectable")   # as results.json of an older run has it
    records["reweight"]["val_gain"] = -1e-6   # rounds to 0: printed +0.00, not -0.00
    lines = _auto_lines({"candidates": records, "chosen": chosen, "why": why,
                         "folds": {"count": 2, "held_out": 400}})
    assert "2 validation folds, 400 held-out observations" in lines[0] and lines[1].split()[-1] == "detects"
    rows = {line.split()[0]: line for line in lines[2:-1]}
    k1 = records["sdnn-k1"]
    assert rows["sdnn-k1"].endswith(f"{100 * k1['lower']:+6.2f}  {100 * k1['detectable']:7.2f}  <- chosen")
    assert rows["reweight"].endswith(f"{100 * records['reweight']['lower']:+6.2f}" + " " * 9)
    assert rows["baseline"].split() == ["baseline", f"{100 * base.mean():.2f}%"]
    assert rows["reweight"].split()[2] == "+0.00"
    assert lines[-1] == f"chosen: {why}"


def test_the_indicators_expectation_tips_a_small_validation_gain_but_not_a_loss():
    """+1 point on 400 validation observations (12 more right, 8 more wrong) is noise alone; with an expectation of +3 [+1.7, +4.3] it is not.
    A candidate that loses on validation is not rescued by a hopeful expectation."""
    from sdnn.auto import choose, combined

    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.8).astype(float)
    small = base.copy()
    small[np.flatnonzero(base == 0)[:12]] = 1  # 12 more right, 8 more wrong: +1 point
    small[np.flatnonzero(base == 1)[:8]] = 0
    expected = {"sdnn-k2": (1.7, 3.0, 4.3), "reweight": (1.7, 3.0, 4.3)}
    assert choose({"baseline": base, "sdnn-k2": small}, _job(prior=False), expected)[0] == "baseline"
    chosen, records, why = choose({"baseline": base, "sdnn-k2": small}, _job(), expected)
    assert chosen == "sdnn-k2" and "expected +3.00" in why
    worse = base.copy()
    worse[np.flatnonzero(base == 1)[:40]] = 0  # −10 points
    assert choose({"baseline": base, "reweight": worse}, _job(), expected)[0] == "baseline"
    # the combination against a hand computation: precision-weighted mean and sd
    gain = combined(small, base, expected["sdnn-k2"])
    se = max(np.std(small - base, ddof=1) / np.sqrt(400), 1 / 400)
    prior_sd = (0.043 - 0.017) / (2 * 1.2816)
    weights = np.array([1 / se ** 2, 1 / prior_sd ** 2])
    assert gain["mean"] == pytest.approx((weights @ [0.01, 0.03]) / weights.sum())
    assert gain["sd"] == pytest.approx(np.sqrt(1 / weights.sum()))
    assert records["sdnn-k2"]["lower"] == pytest.approx(gain["mean"] - 1.6449 * gain["sd"], abs=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["no validation split"], "dataset.val_fraction"),
    (["loss=ce"], "use loss=bce"),
    (["subclass.classes=[0]"], "leave subclass.classes=[0] out"),
    (["auto.candidates=[reweight,sdnn-k1]"], "must include baseline"),
    (["auto.candidates=[baseline,sdnn-two]"], "sdnn-k<k>"),
    (["auto.confidence=1.5"], "auto.confidence=1.5"),
    (["auto.calibration=nowhere.yaml"], "auto.calibration='nowhere.yaml' is not a file"),
    (["auto.folds=0"], "auto.folds=0 must be auto"),
    (["auto.folds=4"], "auto.folds=4: the training split holds 2 part(s) the size of the validation split (45), so "
                       "at most 3 fold(s)"),
])
def test_auto_errors_are_one_line(tmp_path, extra, message):
    data = write_blobs(tmp_path / "modes.npz", multimodal=True, per_class=30, with_val=extra != ["no validation split"])
    extra = [] if extra == ["no validation split"] else extra
    proc = run_cli(["dataset=npz", f"dataset.path={data}", "method=auto", *SHORT, f"hydra.run.dir={tmp_path / 'r'}",
                    f"phase1.cache_dir={tmp_path / 'cache'}", *extra], timeout=QUICK_GUARD)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "r" / "phase1").exists()


def test_auto_in_a_hydra_multirun_beside_sdnn_and_in_the_report(tmp_path):
    """method=auto is a method like any other: a sweep over methods runs it and sdnn.report reads its results."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, RUN_GUARD

    data = write_blobs(tmp_path / "modes.npz", multimodal=True, per_class=100)
    sweep = tmp_path / "multirun"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "method=sdnn,auto", "dataset=npz",
                           f"dataset.path={data}", *SHORT, "auto.candidates=[baseline,sdnn-k1]",
                           f"phase1.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=RUN_GUARD, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads((sweep / str(i) / "results.json").read_text()) for i in (0, 1)]
    assert [r["method"] for r in runs] == ["sdnn", "auto"] and runs[1]["auto"]["chosen"] in ("baseline", "sdnn-k1")
    assert runs[1]["phase1"]["cached"]  # the sdnn job's phase 1, from the cache
    report = subprocess.run([sys.executable, "-m", "sdnn.report", str(sweep)], cwd=ROOT, capture_output=True,
                            text=True, timeout=QUICK_GUARD, env=env)
    assert report.returncode == 0 and "| auto |" in (sweep / "report.md").read_text(), report.stderr[-2000:]
