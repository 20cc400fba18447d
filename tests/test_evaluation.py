"""The shared evaluation library: splits (no leakage), metrics, cached codes, the runner and its report."""

import json

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from biocodec_jax.evaluation import metrics
from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.splits import (
    LeakageError,
    Split,
    check_disjoint,
    fixed_split,
    holdout_folds,
    label_fraction,
    split_indices,
    subject_folds,
)


def toy_data(n_subjects=6, per_subject=8, channels=2, samples=64, n_classes=2, rate=250.0, seed=0, segments=False):
    """Windows whose class is a sinusoid frequency (learnable), ``per_subject`` per subject, classes alternating."""
    rng = np.random.default_rng(seed)
    xs, ys, subjects, recordings = [], [], [], []
    t = np.arange(samples) / rate
    for s in range(n_subjects):
        for i in range(per_subject):
            y = i % n_classes
            x = np.sin(2 * np.pi * (4 + 8 * y) * t + rng.uniform(0, 6.28))[None].repeat(channels, 0)
            xs.append(x + 0.3 * rng.standard_normal((channels, samples)))
            ys.append(y)
            subjects.append(f"S{s:02d}")
            recordings.append(f"S{s:02d}_r{i // 2}")
    return LabelledWindows.build(
        "toy", xs, ys, subjects, recordings, [f"c{k}" for k in range(n_classes)], [f"ch{c}" for c in range(channels)],
        rate, {"note": "synthetic"}, segments=[0] * len(ys) if segments else None,
    )


# --- splits ----------------------------------------------------------------------------------


def test_subject_folds_cover_every_subject_once_as_test_and_never_leak():
    data = toy_data(n_subjects=7)
    folds = subject_folds(data.subjects, 5, seed=3)
    assert len(folds) == 5
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == sorted(set(data.subjects))  # each subject tested exactly once
    for f in folds:
        tr, va, te = split_indices(data, f)
        assert len(tr) + len(va) + len(te) == len(data.y)
        for a, b in ((tr, va), (tr, te), (va, te)):
            assert not set(data.subjects[a]) & set(data.subjects[b])


def test_a_split_with_a_shared_subject_is_refused():
    with pytest.raises(LeakageError, match="S01.*train and test"):
        Split("bad", ("S00", "S01"), ("S02",), ("S01",))
    data = toy_data(n_subjects=3)
    tr, va, te = split_indices(data, fixed_split(["S00"], ["S01"], ["S02"]))
    with pytest.raises(LeakageError, match="S00"):
        check_disjoint(data, tr, va, np.concatenate([te, tr[:1]]))


def test_folds_need_three_subjects_and_splits_need_known_subjects():
    with pytest.raises(DatasetError, match="at least 3 subjects"):
        subject_folds(["a", "b", "a"], 5)
    data = toy_data(n_subjects=3)
    with pytest.raises(DatasetError, match="none of the test subjects"):
        split_indices(data, fixed_split(["S00"], ["S01"], ["S99"]))


def test_holdout_folds_keep_the_official_test_set():
    folds = holdout_folds(["a", "b", "c", "d"], ["x", "y"], 4)
    assert [f.test for f in folds] == [("x", "y")] * 4
    assert sorted(s for f in folds for s in f.val) == ["a", "b", "c", "d"]


def test_label_fraction_is_stratified_and_keeps_every_class():
    y = np.array([0] * 90 + [1] * 10)
    idx = np.arange(100)
    small = label_fraction(y, idx, 0.01, seed=0)
    assert sorted(y[small].tolist()) == [0, 1]  # round(0.9) -> 1 of class 0, max(1, 0) -> 1 of class 1
    tenth = label_fraction(y, idx, 0.1, seed=0)
    assert np.bincount(y[tenth]).tolist() == [9, 1]
    assert np.array_equal(label_fraction(y, idx, 1.0, seed=0), idx)
    assert not np.array_equal(label_fraction(y, idx, 0.5, seed=0), label_fraction(y, idx, 0.5, seed=1))


# --- metrics ---------------------------------------------------------------------------------


def test_binary_and_multiclass_metrics_match_direct_computation():
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    m = metrics.classification_metrics(y, np.stack([1 - p1, p1], 1), 2)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p1 > 0.5)) == pytest.approx(7 / 12)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p1))
    assert m["auc_pr"] == pytest.approx(average_precision_score(y, p1))
    y3 = np.array([0, 1, 2, 2, 1, 0])
    p = np.eye(3)[[0, 1, 1, 2, 1, 2]]
    m3 = metrics.classification_metrics(y3, p, 3)
    pred = p.argmax(1)
    assert m3 == pytest.approx({"balanced_accuracy": balanced_accuracy_score(y3, pred),
                                "cohen_kappa": cohen_kappa_score(y3, pred),
                                "weighted_f1": f1_score(y3, pred, average="weighted")})


def test_a_class_missing_from_the_scored_labels_is_an_error_not_a_number():
    with pytest.raises(DatasetError, match=r"class\(es\) \[1\] absent"):
        metrics.classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1], [0.2, 0.8]]), 2)


def test_aggregation_averages_probabilities_per_unit_and_refuses_mixed_labels():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    p, y = metrics.aggregate(proba, np.array([0, 0, 1]), np.array([5, 5, 7]))
    assert np.allclose(p, [[0.6, 0.4], [0.2, 0.8]]) and y.tolist() == [0, 1]
    with pytest.raises(DatasetError, match="different labels"):
        metrics.aggregate(proba, np.array([0, 1, 1]), np.array([5, 5, 7]))


def test_dataset_validation_names_the_problem():
    data = toy_data(n_subjects=3)
    with pytest.raises(DatasetError, match="labels must be in 0..1"):
        LabelledWindows.build("bad", data.x, data.y + 1, data.subjects, data.recordings, data.class_names,
                              data.channel_names, 250)
    x = data.x.copy()
    x[3, 0, 5] = np.nan
    with pytest.raises(DatasetError, match="non-finite values in windows of S00_r1"):
        LabelledWindows.build("bad", x, data.y, data.subjects, data.recordings, data.class_names, data.channel_names, 250)
    assert toy_data(segments=True).score_groups().max() == len(set(data.recordings)) * 2 - 1


# --- codes, probe, token classifier through the runner --------------------------------------


@pytest.fixture(scope="module")
def tiny_codec():
    from biocodec_jax import Codec

    data = toy_data(n_subjects=6, samples=64)
    return Codec.from_preset("tiny", seed=0, init_batch=data.x[:16])


def test_cached_codes_equal_a_direct_encode_and_are_keyed_by_codec(tiny_codec, tmp_path):
    from biocodec_jax import Codec
    from biocodec_jax.evaluation.features import codec_features

    data = toy_data(n_subjects=3, samples=64)
    first = codec_features(tiny_codec, data, tmp_path)
    again = codec_features(tiny_codec, data, tmp_path)
    assert len(list(tmp_path.glob("*/complete.json"))) == 1  # one complete cache directory
    direct = np.asarray(tiny_codec.encode(data.x))  # [N, C, K, T']
    assert np.array_equal(first.codes, np.moveaxis(direct, 2, 3))
    assert np.array_equal(again.codes, first.codes) and np.array_equal(again.pooled, first.pooled)
    emb = np.asarray(tiny_codec.embed(data.x)).mean(-1)
    assert np.allclose(first.pooled, emb, atol=1e-5)
    other = Codec.from_preset("tiny", seed=1, init_batch=data.x[:16])
    codec_features(other, data, tmp_path)
    assert len(list(tmp_path.glob("*/complete.json"))) == 2
    with pytest.raises(ValueError, match="at 500 Hz but the codec codes 250 Hz"):
        codec_features(tiny_codec, LabelledWindows.build("r", data.x, data.y, data.subjects, data.recordings,
                                                         data.class_names, data.channel_names, 500))


def test_runner_scores_every_method_split_and_seed_and_writes_the_report(tiny_codec, tmp_path):
    from biocodec_jax.evaluation.runner import EvalConfig, run_evaluation
    from biocodec_jax.evaluation.token_classifier import TokenClassifierConfig

    data = toy_data(n_subjects=6, samples=64, per_subject=12)
    splits = subject_folds(data.subjects, 3, seed=0)
    config = EvalConfig(methods=("linear_probe", "token_classifier"), protocol="low-resource", seeds=2,
                        classifier=TokenClassifierConfig(epochs=2, batch_size=16))
    out = run_evaluation(data, splits, tiny_codec, config, tmp_path / "report", tmp_path / "cache", progress=False,
                         info={"variant": "toy"})
    assert out["complete"] and set(out["results"]) == {"subject_folds"}  # one list of splits: one protocol
    results = out["results"]["subject_folds"]
    assert set(results) == {"1%", "10%", "100%"}
    for fraction in results.values():
        # The controls sit beside the methods, scored on the same splits and seeds.
        assert list(fraction) == ["chance", "random_codec", "handcrafted", "linear_probe", "token_classifier"]
        for method, res in fraction.items():
            assert len(res["runs"]) == 2 * 3  # seeds x splits
            assert set(res["summary"]) == {"balanced_accuracy", "auroc", "auc_pr"}
            assert np.sum(res["confusion"]) == 2 * len(data.y)  # every window scored once per seed
    runs = results["100%"]["linear_probe"]["runs"]
    by_seed = [np.mean([r["metrics"]["auroc"] for r in runs if r["seed"] == s]) for s in (0, 1)]
    summary = results["100%"]["linear_probe"]["summary"]["auroc"]
    assert summary["mean"] == pytest.approx(np.mean(by_seed))
    values = [r["metrics"]["auroc"] for r in runs]  # the interval: t over the 6 runs
    half = scipy.stats.t.ppf(0.975, 5) * np.std(values, ddof=1) / np.sqrt(6)
    assert summary["ci95"] == pytest.approx([np.mean(values) - half, np.mean(values) + half])
    chance = results["100%"]["chance"]["summary"]
    assert chance["balanced_accuracy"]["mean"] == 0.5 and chance["auroc"]["mean"] == 0.5
    assert results["1%"]["linear_probe"]["runs"][0]["train_windows"] == 2  # one window per class
    # Gains: paired over (split, seed), for every method over every control.
    gain = out["gains"]["subject_folds"]["100%"]["linear_probe"]
    assert set(gain) == {"chance", "random_codec", "handcrafted"} and out["gain_metric"] == "balanced_accuracy"
    diffs = [r["metrics"]["balanced_accuracy"] - 0.5 for r in runs]
    assert gain["chance"]["mean"] == pytest.approx(np.mean(diffs)) and gain["chance"]["n"] == 6
    assert "chance" not in out["gains"]["subject_folds"]["100%"]  # controls get no gain row
    written = json.loads((tmp_path / "report" / "results.json").read_text())
    assert written["results"] == json.loads(json.dumps(out["results"])) and written["complete"]
    table = (tmp_path / "report" / "results.md").read_text()
    assert "BioCodec token classifier" in table and "| 10% |" in table and "## subject_folds" in table
    assert "control: random-init codec, linear probe" in table and "BAcc gain vs handcrafted" in table
    assert "INCOMPLETE" not in table
    assert (tmp_path / "report" / "confusion_matrix.png").stat().st_size > 1000


def test_controls_features_match_direct_computation():
    from biocodec_jax.evaluation import controls

    rng = np.random.default_rng(0)
    rate = 250.0
    t = np.arange(500) / rate
    x = np.stack([np.stack([np.sin(2 * np.pi * 10 * t), 3 * rng.standard_normal(500)])])  # [1, 2, 500]
    bp = controls.eeg_band_power(x, rate).reshape(2, 5)
    assert bp[0].argmax() == 2  # a 10-Hz sine: alpha
    f, p = scipy.signal.welch(x[0, 1], fs=rate, nperseg=250)
    beta = np.log(p[(f >= 13) & (f < 30)].sum() * (f[1] - f[0]))
    assert bp[1, 3] == pytest.approx(beta, rel=1e-5)
    td = controls.emg_time_domain(x).reshape(2, 3)
    assert np.exp(td[1]) == pytest.approx([np.sqrt(np.mean(x[0, 1] ** 2)), np.mean(np.abs(x[0, 1])),
                                           np.mean(np.abs(np.diff(x[0, 1])))], rel=1e-5)
    assert controls.chance_proba(np.array([0, 0, 1, 1, 1]), 2, 3).tolist() == [[0.4, 0.6, 0.0]] * 2
    g = controls.gains({"m": [{"split": "a", "seed": 0, "metrics": {"balanced_accuracy": 0.7}},
                              {"split": "b", "seed": 0, "metrics": {"balanced_accuracy": 0.9}}],
                        "chance": [{"split": "a", "seed": 0, "metrics": {"balanced_accuracy": 0.5}},
                                   {"split": "b", "seed": 0, "metrics": {"balanced_accuracy": 0.5}}]})
    assert g["m"]["chance"]["mean"] == pytest.approx(0.3) and g["m"]["chance"]["n"] == 2
    lo, hi = g["m"]["chance"]["ci95"]
    assert lo == pytest.approx(0.3 - scipy.stats.t.ppf(0.975, 1) * np.std([0.2, 0.4], ddof=1) / np.sqrt(2))


def test_a_failing_method_is_reported_and_the_others_keep_their_results(tiny_codec, tmp_path, monkeypatch):
    """One method running out of memory (or failing) must not lose the others' results."""
    from biocodec_jax.evaluation import runner
    from biocodec_jax.evaluation.runner import EvalConfig, run_evaluation

    real = runner.fit_token_classifier

    def out_of_memory(*args, **kwargs):
        raise MemoryError("RESOURCE_EXHAUSTED: asked for 45.9 GB")

    monkeypatch.setattr(runner, "fit_token_classifier", out_of_memory)
    data = toy_data(n_subjects=4, samples=64)
    splits = {"a": subject_folds(data.subjects, 3, seed=0), "b": subject_folds(data.subjects, 4, seed=1)}
    out = run_evaluation(data, splits, tiny_codec, EvalConfig(methods=("linear_probe", "token_classifier"), seeds=1,
                                                             controls=("chance",)),
                         tmp_path / "report", progress=False)
    assert set(out["results"]) == {"a", "b"}
    for protocol in ("a", "b"):
        assert set(out["results"][protocol]["100%"]) == {"chance", "linear_probe"}
        assert "RESOURCE_EXHAUSTED" in out["failed_methods"][protocol]["token_classifier"]
    table = (tmp_path / "report" / "results.md").read_text()
    assert "**BioCodec token classifier failed** (a)" in table and "| BioCodec token classifier | failed |" in table
    assert real is not out_of_memory


def test_partial_results_are_written_after_every_split_and_marked_incomplete(tiny_codec, tmp_path, monkeypatch):
    from biocodec_jax.evaluation import runner
    from biocodec_jax.evaluation.runner import EvalConfig, run_evaluation

    seen = []
    real = runner.write_report

    def spy(results, output_dir, figures=True):
        seen.append((results["complete"], sum(len(r["runs"]) for r in results["results"]["subject_folds"]["100%"].values())))
        return real(results, output_dir, figures)

    monkeypatch.setattr(runner, "write_report", spy)
    data = toy_data(n_subjects=3, samples=64)
    run_evaluation(data, subject_folds(data.subjects, 3), tiny_codec,
                   EvalConfig(methods=("linear_probe",), seeds=1, controls=("chance",)), tmp_path, progress=False)
    assert seen == [(False, 2), (False, 4), (False, 6), (True, 6)]


def test_runner_refuses_a_split_whose_test_subjects_lack_a_class(tiny_codec):
    from biocodec_jax.evaluation.runner import EvalConfig, run_evaluation

    data = toy_data(n_subjects=3, samples=64)
    keep = ~((data.subjects == "S02") & (data.y == 1))
    with pytest.raises(DatasetError, match="class\\(es\\) c1 absent from the test subjects"):
        run_evaluation(data.subset(keep), [fixed_split(["S00"], ["S01"], ["S02"])], tiny_codec,
                       EvalConfig(methods=("linear_probe",), seeds=1), progress=False)


def test_results_of_a_partial_dataset_say_so_and_name_the_files():
    """Files a task's loader skipped (experiments.tasks.common.SkippedFiles) head results.md."""
    from biocodec_jax.evaluation.report import _header
    from data_pipelines.errors import RecordingError
    from experiments.tasks.common import SkippedFiles

    skipped = SkippedFiles("eegmmi")
    skipped("S003/S003R04.edf", RecordingError("S003/S003R04.edf", "truncated or damaged"))
    prep = skipped.record({"band_pass_hz": [0.5, 40]})
    assert prep["skipped_files"] == [{"path": "S003/S003R04.edf", "reason": "truncated or damaged"}]
    results = {"task": "eegmmi", "data": {"summary": "2 subjects", "scoring_units": 2, "preprocessing": prep},
               "config": {"protocol": "full", "seeds": 1}, "protocols": {"subject_folds": {"unit": "subjects", "splits": [{}]}}}
    header = _header(results)
    assert "**partial dataset**: 1 file(s)" in header and "`S003/S003R04.edf` (truncated or damaged)" in header
    assert "partial" not in _header({**results, "data": {**results["data"], "preprocessing": {}}})
    assert SkippedFiles("x").record({}) == {}  # nothing skipped: nothing added (cache keys unchanged)
