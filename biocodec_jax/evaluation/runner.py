"""One downstream evaluation: every method on every split, seed and label fraction, then the report.

``run_evaluation(data, splits, codec, config, output_dir)`` is what each task program calls once it
has read its dataset. For each label fraction (``full``: 100 %; ``low-resource``: 1 %, 10 %,
100 % of the training windows, class-stratified), seed and split it trains every method on the
training subjects, selects on the validation subjects, scores the test subjects (probabilities
averaged per scoring unit where the protocol says so) and records the original's metrics. A task
may give several protocols (``{name: splits}``, e.g. ``within_participant`` and
``leave_one_participant_out``); each is scored on its own. The controls (chance, a random-init
codec, handcrafted features; :mod:`biocodec_jax.evaluation.controls`) run beside the methods on the
same splits and seeds. Summary numbers are mean +- sd over seeds of the mean over splits, with a
95 % t-interval over the runs (splits x seeds); gains over the controls are paired over the runs.

``results.json``: ``results[protocol][fraction][method]`` (methods and the controls ``chance``,
``random_codec``, ``handcrafted`` side by side) holds ``summary[metric]`` (``mean``, ``sd``,
``ci95``), ``confusion`` and ``runs``; ``gains[protocol][fraction][method][control]`` the gain in
``gain_metric`` (``balanced_accuracy``) with ``mean``, ``ci95`` and ``n``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from biocodec_jax.evaluation import baselines
from biocodec_jax.evaluation import controls as controls_lib
from biocodec_jax.evaluation import metrics as metrics_lib
from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.features import codec_features
from biocodec_jax.evaluation.linear_probe import LinearProbeConfig, Rows, fit_linear_probe, probe_features
from biocodec_jax.evaluation.report import write_report
from biocodec_jax.evaluation.splits import Split, label_fraction, split_indices
from biocodec_jax.evaluation.token_classifier import TokenClassifierConfig, fit_token_classifier

log = logging.getLogger(__name__)

CODEC_METHODS = ("linear_probe", "token_classifier")
BASELINE_METHODS = ("eegnet", "shallow")
METHODS = CODEC_METHODS + BASELINE_METHODS
PROTOCOLS = {"full": (1.0,), "low-resource": (0.01, 0.1, 1.0)}
DEFAULT_PROTOCOL = "subject_folds"  # the name of a task's splits when it gives one list
GAIN_METRIC = "balanced_accuracy"
CONTROL_DESCRIPTIONS = {
    "chance": lambda modality: "the training labels' class frequencies for every test unit (input ignored)",
    "random_codec": lambda modality: ("the codec's architecture with random weights and k-means codebooks "
                                      "(no training step), linear probe"),
    "handcrafted": lambda modality: f"{controls_lib.handcrafted_description(modality)}, linear probe",
}


@dataclass(frozen=True)
class EvalConfig:
    """What to run: methods, protocol (label fractions), seeds, and each method's settings."""

    methods: tuple[str, ...] = METHODS
    controls: tuple[str, ...] = controls_lib.CONTROLS  # scored beside the methods (see evaluation.controls)
    protocol: str = "full"
    seeds: int = 3
    max_splits: int | None = None  # only the first n splits (quick looks; the protocol uses all)
    probe: LinearProbeConfig = LinearProbeConfig()
    classifier: TokenClassifierConfig = TokenClassifierConfig()
    baseline_epochs: int | None = None  # None: each baseline's own default
    skip_unavailable_baselines: bool = True

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
        unknown = [c for c in self.controls if c not in controls_lib.CONTROLS]
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {controls_lib.CONTROLS}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose from {tuple(PROTOCOLS)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1; got {self.seeds}")

    @property
    def fractions(self) -> tuple[float, ...]:
        return PROTOCOLS[self.protocol]


@dataclass
class MethodResult:
    """Every run of one method at one label fraction, and its summary."""

    runs: list[dict] = field(default_factory=list)
    confusion: np.ndarray | None = None

    def summary(self, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
        seeds = sorted({r["seed"] for r in self.runs})
        per_seed = {m: [np.mean([r["metrics"][m] for r in self.runs if r["seed"] == s]) for s in seeds] for m in names}
        out = {}
        for m, v in per_seed.items():
            runs = controls_lib.t_interval(r["metrics"][m] for r in self.runs)
            out[m] = {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                      "n_seeds": len(v), "ci95": runs["ci95"], "n_runs": runs["n"]}
        return out


def _check_classes(data: LabelledWindows, split: Split, index: np.ndarray, part: str, consequence: str) -> None:
    """Every class must have windows among ``index``, the windows of the split's ``part`` ("train"/"test")."""
    present = set(np.unique(data.y[index]).tolist())
    missing = [data.class_names[c] for c in range(data.n_classes) if c not in present]
    if missing:
        subjects = ", ".join(getattr(split, part)[:5])
        raise DatasetError(f"{data.name}, split {split.name}: class(es) {', '.join(missing)} absent from the {part} "
                           f"subjects ({subjects}); {consequence}")


def _fit_predict(method: str, data: LabelledWindows, features: "_Features", tr, va, te, config: EvalConfig,
                 seed: int) -> tuple[np.ndarray, dict]:
    """Train ``method`` (or a control) on ``tr`` (selecting on ``va``) and return test probabilities and training facts."""
    y, k = data.y, data.n_classes
    if method == "chance":
        return controls_lib.chance_proba(y[tr], len(te), k), {}
    probe_inputs = {"linear_probe": features.probe_x, "random_codec": features.random_probe_x,
                    "handcrafted": features.handcrafted}
    if method in probe_inputs:
        x = probe_inputs[method]  # in memory, or memmapped features read in chunks (Rows)
        fitted = fit_linear_probe(Rows(x, tr), y[tr], Rows(x, va), y[va], k, config.probe, seed)
        return fitted.predict_proba(Rows(x, te)), {"C": fitted.c, "out_of_core": fitted.out_of_core}
    if method == "token_classifier":
        codes = features.codec.codes
        fitted = fit_token_classifier(codes[tr], y[tr], codes[va], y[va], k, features.codebooks,
                                      config.classifier, seed)
        return fitted.predict_proba(codes[te]), {"best_epoch": fitted.best_epoch}
    baseline_config = baselines.default_config(method)
    if config.baseline_epochs is not None:
        baseline_config = dataclasses.replace(baseline_config, epochs=config.baseline_epochs)
    fitted = baselines.fit_baseline(method, data.x[tr], y[tr], data.x[va], y[va], k, data.sample_rate,
                                    baseline_config, seed)
    return fitted.predict_proba(data.x[te]), {"best_epoch": fitted.best_epoch}


def _methods_to_run(config: EvalConfig) -> tuple[tuple[str, ...], dict[str, str]]:
    skipped = {}
    methods = config.methods
    if any(m in BASELINE_METHODS for m in methods):
        if not baselines.baselines_available():
            reason = 'torch/braindecode not installed (pip install "biocodec-jax[baselines]")'
            if not config.skip_unavailable_baselines:
                raise ImportError(reason)
            skipped = {m: reason for m in methods if m in BASELINE_METHODS}
            log.warning("skipping PyTorch baselines: %s", reason)
            methods = tuple(m for m in methods if m not in BASELINE_METHODS)
    return methods, skipped


def as_protocols(splits: list[Split] | dict[str, list[Split]], default: str = DEFAULT_PROTOCOL) -> dict[str, list[Split]]:
    """A task's splits as ``{protocol: [Split, ...]}``: a plain list is one protocol named ``default``."""
    protocols = dict(splits) if isinstance(splits, dict) else {default: list(splits)}
    if not protocols or any(not v for v in protocols.values()):
        raise DatasetError(f"no splits to evaluate ({', '.join(k for k, v in protocols.items() if not v) or 'no protocol'})")
    return protocols


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text if len(text) <= 500 else text[:500] + " ..."


class _Features:
    """What the methods and controls read, each computed once (``None`` where it could not be)."""

    def __init__(self):
        self.codec = self.probe_x = self.codebooks = None
        self.random_probe_x = self.handcrafted = None
        self.codec_id = self.random_codec_id = None


def _compute_features(data, codec, methods, controls, config, cache_dir, progress, modality, failed):
    """Codec features, the random codec's and the handcrafted ones; a failure is recorded in ``failed``
    (``{method: reason}``) for the methods and controls that needed it, and the others go on."""
    f = _Features()
    if any(m in CODEC_METHODS for m in methods):
        try:
            f.codec = codec_features(codec, data, cache_dir, progress)
            f.probe_x = probe_features(f.codec, config.probe.features, codec.codec_config.codebook_size)
            f.codebooks = np.asarray(codec.codebooks.codebook)
            f.codec_id = f.codec.codec_id
        except Exception as err:  # noqa: BLE001 - one failing step must not lose the other methods' results
            log.exception("coding %s with the codec failed; its methods are skipped", data.name)
            failed.update({m: f"coding failed: {_error_text(err)}" for m in methods if m in CODEC_METHODS})
    if "random_codec" in controls:
        try:
            rc = controls_lib.random_codec(codec, data, seed=0)
            feats = codec_features(rc, data, cache_dir, progress)
            f.random_probe_x = probe_features(feats, config.probe.features, rc.codec_config.codebook_size)
            f.random_codec_id = feats.codec_id
        except Exception as err:  # noqa: BLE001
            log.exception("coding %s with the random-init codec failed", data.name)
            failed["random_codec"] = f"coding failed: {_error_text(err)}"
    if "handcrafted" in controls:
        try:
            f.handcrafted = controls_lib.handcrafted_features(data, modality)
        except Exception as err:  # noqa: BLE001
            log.exception("handcrafted features of %s failed", data.name)
            failed["handcrafted"] = _error_text(err)
    return f


def _summaries(results: dict, names) -> dict:
    return {
        protocol: {
            _fraction_key(fr): {m: {"summary": r.summary(names), "confusion": None if r.confusion is None else r.confusion.tolist(),
                                    "runs": r.runs}
                                for m, r in by_method.items() if r.runs}
            for fr, by_method in by_fraction.items()
        }
        for protocol, by_fraction in results.items()
    }


def _gains(results: dict) -> dict:
    return {
        protocol: {_fraction_key(fr): controls_lib.gains({m: r.runs for m, r in by_method.items() if r.runs}, GAIN_METRIC)
                   for fr, by_method in by_fraction.items()}
        for protocol, by_fraction in results.items()
    }


def run_evaluation(data: LabelledWindows, splits: list[Split] | dict[str, list[Split]], codec,
                   config: EvalConfig = EvalConfig(), output_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, progress: bool = True, info: dict[str, Any] | None = None,
                   modality: str = "eeg") -> dict[str, Any]:
    """Run ``config`` on ``data`` with ``splits``; write the report to ``output_dir`` if given; return the results.

    ``splits`` is a list (one protocol, :data:`DEFAULT_PROTOCOL`) or ``{protocol: [Split, ...]}``
    (e.g. ``within_participant`` and ``leave_one_participant_out``), each scored on its own. The
    controls of ``config.controls`` (:mod:`~biocodec_jax.evaluation.controls`) are scored on the
    same splits beside the methods, and every method's gain over each control is reported with a
    95 % interval. ``codec`` (a :class:`~biocodec_jax.Codec`) is needed for the probe, the token
    classifier and the random-codec control; ``modality`` (``eeg``/``emg``) picks the handcrafted
    features; ``info`` (task, variant, codec path, ...) is stored with the results.

    A method or control that fails (an error, or memory the machine does not have) is reported in
    ``failed_methods`` with its reason and the others go on. With ``output_dir``, ``results.json``
    and ``results.md`` are rewritten after every split, marked incomplete (``"complete": false``)
    until the last one, so a run that dies keeps what had finished and does not present it as whole.
    """
    methods, skipped = _methods_to_run(config)
    controls = tuple(c for c in config.controls if c in controls_lib.CONTROLS)
    if "random_codec" in controls and codec is None:
        skipped["random_codec"] = "no codec given (the control is the codec's architecture, untrained)"
        controls = tuple(c for c in controls if c != "random_codec")
    protocols = as_protocols(splits)
    if config.max_splits:
        protocols = {p: s[: config.max_splits] for p, s in protocols.items()}
    indices = {}
    for protocol, protocol_splits in protocols.items():
        indices[protocol] = [split_indices(data, s) for s in protocol_splits]  # refuses leaking splits before any work
        for split, (tr, _, te) in zip(protocol_splits, indices[protocol]):
            _check_classes(data, split, tr, "train", "a classifier cannot learn them")
            _check_classes(data, split, te, "test", "the metrics would be undefined — use fewer folds or more subjects")

    started = time.time()
    failed: dict[str, dict[str, str]] = {}
    feature_failures: dict[str, str] = {}
    features = _compute_features(data, codec, methods, controls, config, cache_dir, progress, modality, feature_failures)
    coding_s = time.time() - started

    groups = data.score_groups()
    names = metrics_lib.metric_names(data.n_classes)
    order = controls + methods
    results = {p: {f: {m: MethodResult() for m in order} for f in config.fractions} for p in protocols}

    def report(complete: bool) -> dict[str, Any]:
        out = {
            "task": data.name,
            **(info or {}),
            "complete": complete,
            "data": {"summary": data.summary(), "windows": int(len(data.y)), "channels": list(data.channel_names),
                     "samples_per_window": int(data.x.shape[2]), "sample_rate": data.sample_rate,
                     "classes": list(data.class_names),
                     "class_counts": np.bincount(data.y, minlength=data.n_classes).tolist(),
                     "subjects": int(len(set(data.subjects))), "scoring_units": int(len(np.unique(groups))),
                     "preprocessing": data.preprocessing},
            "codec_id": features.codec_id,
            "config": _to_jsonable(dataclasses.asdict(config)),
            "modality": modality,
            "protocols": {p: {"unit": s[0].unit, "splits": [dataclasses.asdict(x) for x in s]} for p, s in protocols.items()},
            "metric_names": list(names),
            "methods": list(methods),
            "controls": {c: CONTROL_DESCRIPTIONS[c](modality) for c in controls},
            "random_codec_id": features.random_codec_id,
            "skipped_methods": skipped,
            "failed_methods": failed,
            "results": _summaries(results, names),
            "gain_metric": GAIN_METRIC,
            "gains": _gains(results),
            "seconds": {"coding": round(coding_s, 1), "total": round(time.time() - started, 1)},
        }
        if output_dir is not None:
            write_report(out, output_dir, figures=complete)
        return out

    total = sum(len(s) for s in protocols.values()) * len(config.fractions) * config.seeds * len(order)
    bar = tqdm(total=total, desc=f"evaluating {data.name}", unit="fit", disable=not progress, mininterval=5)
    for protocol, protocol_splits in protocols.items():
        failed_here = failed.setdefault(protocol, {})
        failed_here.update(feature_failures)
        for fraction in config.fractions:
            for seed in range(config.seeds):
                for split, (tr, va, te) in zip(protocol_splits, indices[protocol]):
                    tr_used = label_fraction(data.y, tr, fraction, seed)
                    for method in order:
                        bar.update(1)
                        if method in failed_here:  # it failed once here: the same data would fail again
                            continue
                        t0 = time.time()
                        try:
                            proba, facts = _fit_predict(method, data, features, tr_used, va, te, config, seed)
                        except (KeyboardInterrupt, DatasetError):
                            raise
                        except Exception as err:  # noqa: BLE001 - reported, and the other methods go on
                            log.exception("%s %s %s split %s failed; its remaining runs are skipped",
                                          data.name, protocol, method, split.name)
                            failed_here[method] = f"split {split.name}, seed {seed}: {_error_text(err)}"
                            continue
                        proba_units, y_units = metrics_lib.aggregate(proba, data.y[te], groups[te])
                        scores = metrics_lib.classification_metrics(y_units, proba_units, data.n_classes)
                        result = results[protocol][fraction][method]
                        cm = metrics_lib.confusion(y_units, proba_units, data.n_classes)
                        result.confusion = cm if result.confusion is None else result.confusion + cm
                        result.runs.append({"seed": seed, "split": split.name, "train_windows": int(len(tr_used)),
                                            "val_windows": int(len(va)), "test_windows": int(len(te)),
                                            "test_units": int(len(y_units)), "metrics": scores,
                                            "seconds": round(time.time() - t0, 2), **facts})
                        log.info("%s %s %s fraction %g seed %d %s: %s (%.0f s)", data.name, protocol, method, fraction,
                                 seed, split.name, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), time.time() - t0)
                    if output_dir is not None:
                        report(complete=False)
        if not failed_here:
            del failed[protocol]
    bar.close()
    return report(complete=True)


def _fraction_key(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _to_jsonable(value):
    return json.loads(json.dumps(value, default=str))
