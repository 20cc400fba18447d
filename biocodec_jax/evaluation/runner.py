"""One downstream evaluation: every method on every split, seed and label fraction, then the report.

``run_evaluation(data, splits, codec, config, output_dir)`` is what each task program calls once it
has read its dataset. For each label fraction (``full``: 100 %; ``low-resource``: 1 %, 10 %,
100 % of the training windows, class-stratified), seed and split it trains every method on the
training subjects, selects on the validation subjects, scores the test subjects (probabilities
averaged per scoring unit where the protocol says so) and records the original's metrics.
Summary numbers are mean +- sd over seeds of the mean over splits.
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
from biocodec_jax.evaluation import metrics as metrics_lib
from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.features import codec_features
from biocodec_jax.evaluation.linear_probe import LinearProbeConfig, fit_linear_probe, probe_features
from biocodec_jax.evaluation.report import write_report
from biocodec_jax.evaluation.splits import Split, label_fraction, split_indices
from biocodec_jax.evaluation.token_classifier import TokenClassifierConfig, fit_token_classifier

log = logging.getLogger(__name__)

CODEC_METHODS = ("linear_probe", "token_classifier")
BASELINE_METHODS = ("eegnet", "shallow")
METHODS = CODEC_METHODS + BASELINE_METHODS
PROTOCOLS = {"full": (1.0,), "low-resource": (0.01, 0.1, 1.0)}


@dataclass(frozen=True)
class EvalConfig:
    """What to run: methods, protocol (label fractions), seeds, and each method's settings."""

    methods: tuple[str, ...] = METHODS
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
        return {m: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n_seeds": len(v)}
                for m, v in per_seed.items()}


def _check_classes(data: LabelledWindows, split: Split, index: np.ndarray, part: str, consequence: str) -> None:
    """Every class must have windows among ``index``, the windows of the split's ``part`` ("train"/"test")."""
    present = set(np.unique(data.y[index]).tolist())
    missing = [data.class_names[c] for c in range(data.n_classes) if c not in present]
    if missing:
        subjects = ", ".join(getattr(split, part)[:5])
        raise DatasetError(f"{data.name}, split {split.name}: class(es) {', '.join(missing)} absent from the {part} "
                           f"subjects ({subjects}); {consequence}")


def _fit_predict(method: str, data: LabelledWindows, features, probe_x, codebooks, tr, va, te, config: EvalConfig,
                 seed: int) -> tuple[np.ndarray, dict]:
    """Train ``method`` on ``tr`` (selecting on ``va``) and return test probabilities and training facts."""
    y, k = data.y, data.n_classes
    if method == "linear_probe":
        fitted = fit_linear_probe(probe_x[tr], y[tr], probe_x[va], y[va], k, config.probe, seed)
        return fitted.predict_proba(probe_x[te]), {"C": fitted.c}
    if method == "token_classifier":
        fitted = fit_token_classifier(features.codes[tr], y[tr], features.codes[va], y[va], k, codebooks,
                                      config.classifier, seed)
        return fitted.predict_proba(features.codes[te]), {"best_epoch": fitted.best_epoch}
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


def run_evaluation(data: LabelledWindows, splits: list[Split], codec, config: EvalConfig = EvalConfig(),
                   output_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                   progress: bool = True, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``config`` on ``data`` with ``splits``; write the report to ``output_dir`` if given; return the results.

    ``codec`` (a :class:`~biocodec_jax.Codec`) is needed for the probe and the token classifier;
    ``info`` (task, variant, codec path, ...) is stored with the results.
    """
    methods, skipped = _methods_to_run(config)
    splits = splits[: config.max_splits] if config.max_splits else splits
    indices = [split_indices(data, s) for s in splits]  # refuses leaking splits before any work
    for split, (tr, _, te) in zip(splits, indices):
        _check_classes(data, split, tr, "train", "a classifier cannot learn them")
        _check_classes(data, split, te, "test", "the metrics would be undefined — use fewer folds or more subjects")

    started = time.time()
    features = probe_x = codebooks = None
    if any(m in CODEC_METHODS for m in methods):
        features = codec_features(codec, data, cache_dir, progress)
        probe_x = probe_features(features, config.probe.features, codec.codec_config.codebook_size)
        codebooks = np.asarray(codec.codebooks.codebook)
    coding_s = time.time() - started

    groups = data.score_groups()
    names = metrics_lib.metric_names(data.n_classes)
    results = {f: {m: MethodResult() for m in methods} for f in config.fractions}
    total = len(config.fractions) * config.seeds * len(splits) * len(methods)
    bar = tqdm(total=total, desc=f"evaluating {data.name}", unit="fit", disable=not progress, mininterval=5)
    for fraction in config.fractions:
        for seed in range(config.seeds):
            for split, (tr, va, te) in zip(splits, indices):
                tr_used = label_fraction(data.y, tr, fraction, seed)
                y_units = None
                for method in methods:
                    t0 = time.time()
                    proba, facts = _fit_predict(method, data, features, probe_x, codebooks, tr_used, va, te, config, seed)
                    proba_units, y_units = metrics_lib.aggregate(proba, data.y[te], groups[te])
                    scores = metrics_lib.classification_metrics(y_units, proba_units, data.n_classes)
                    result = results[fraction][method]
                    cm = metrics_lib.confusion(y_units, proba_units, data.n_classes)
                    result.confusion = cm if result.confusion is None else result.confusion + cm
                    result.runs.append({"seed": seed, "split": split.name, "train_windows": int(len(tr_used)),
                                        "val_windows": int(len(va)), "test_windows": int(len(te)),
                                        "test_units": int(len(y_units)), "metrics": scores,
                                        "seconds": round(time.time() - t0, 2), **facts})
                    log.info("%s %s fraction %g seed %d %s: %s (%.0f s)", data.name, method, fraction, seed, split.name,
                             ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), time.time() - t0)
                    bar.update(1)
    bar.close()

    out = {
        "task": data.name,
        **(info or {}),
        "data": {"summary": data.summary(), "windows": int(len(data.y)), "channels": list(data.channel_names),
                 "samples_per_window": int(data.x.shape[2]), "sample_rate": data.sample_rate,
                 "classes": list(data.class_names), "class_counts": np.bincount(data.y, minlength=data.n_classes).tolist(),
                 "subjects": int(len(set(data.subjects))), "scoring_units": int(len(np.unique(groups))),
                 "preprocessing": data.preprocessing},
        "codec_id": None if features is None else features.codec_id,
        "config": _to_jsonable(dataclasses.asdict(config)),
        "splits": [dataclasses.asdict(s) for s in splits],
        "metric_names": list(names),
        "skipped_methods": skipped,
        "results": {
            _fraction_key(f): {m: {"summary": r.summary(names), "confusion": r.confusion.tolist(), "runs": r.runs}
                               for m, r in by_method.items()}
            for f, by_method in results.items()
        },
        "seconds": {"coding": round(coding_s, 1), "total": round(time.time() - started, 1)},
    }
    if output_dir is not None:
        write_report(out, output_dir)
    return out


def _fraction_key(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _to_jsonable(value):
    return json.loads(json.dumps(value, default=str))
