"""The report of one evaluation: ``results.json``, ``results.md`` (ours vs baselines) and ``confusion_matrix.png``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

METHOD_LABELS = {
    "chance": "control: chance",
    "random_codec": "control: random-init codec, linear probe",
    "handcrafted": "control: handcrafted features, linear probe",
    "linear_probe": "BioCodec linear probe",
    "token_classifier": "BioCodec token classifier",
    "eegnet": "EEGNet (braindecode)",
    "shallow": "ShallowFBCSPNet (braindecode)",
}
CONTROL_COLUMNS = {"chance": "vs chance", "random_codec": "vs random codec", "handcrafted": "vs handcrafted"}
METRIC_LABELS = {"balanced_accuracy": "BAcc", "auroc": "AUROC", "auc_pr": "AUC-PR",
                 "cohen_kappa": "Cohen's kappa", "weighted_f1": "weighted F1"}


def _mean_sd(summary: dict[str, Any]) -> str:
    """``mean ± sd`` over seeds; the mean alone for one seed (an sd over one value is not zero, it is undefined)."""
    if summary["sd"] is None:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ± {summary['sd']:.4f}"


def _interval(ci) -> str:
    return "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _gain(g: dict[str, Any] | None) -> str:
    if not g or g.get("n", 0) == 0:
        return "-"
    return f"{g['mean']:+.3f} {_interval(g['ci95'])}"


def markdown_table(results: dict[str, Any], protocol: str | None = None) -> str:
    """Rows: control or method (x label fraction); columns: the task's metrics as mean +- sd over seeds,
    and the 95 % interval of the first metric (balanced accuracy) over the runs (splits x seeds)."""
    names = results["metric_names"]
    protocol = protocol or next(iter(results["results"]))
    by_fraction = results["results"][protocol]
    fractions = list(by_fraction)
    lead = ["method"] + (["labels"] if len(fractions) > 1 else [])
    head = lead + [METRIC_LABELS.get(m, m) for m in names] + [f"{METRIC_LABELS.get(names[0], names[0])} 95 % CI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fraction in fractions:
        for method, res in by_fraction[fraction].items():
            cells = [METHOD_LABELS.get(method, method)] + ([fraction] if len(fractions) > 1 else [])
            cells += [_mean_sd(res["summary"][m]) for m in names] + [_interval(res["summary"][names[0]].get("ci95"))]
            lines.append("| " + " | ".join(cells) + " |")
    blank = len(head) - 1
    for method, reason in (results.get("failed_methods") or {}).get(protocol, {}).items():
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(["failed"] * blank) + " |")
    for method, reason in results.get("skipped_methods", {}).items():
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(["skipped"] * blank) + " |")
    return "\n".join(lines) + "\n"


def gains_table(results: dict[str, Any], protocol: str | None = None) -> str:
    """Rows: each method (x label fraction); columns: its gain in ``gain_metric`` over each control,
    mean over the paired runs and the 95 % t-interval."""
    protocol = protocol or next(iter(results["results"]))
    gains = (results.get("gains") or {}).get(protocol) or {}
    fractions = list(gains)
    controls = [c for c in CONTROL_COLUMNS if c in (results.get("controls") or {})]
    rows = [(f, m, g) for f in fractions for m, g in gains[f].items()]
    if not rows or not controls:
        return ""
    lead = ["method"] + (["labels"] if len(fractions) > 1 else [])
    metric = METRIC_LABELS.get(results.get("gain_metric", "balanced_accuracy"), "BAcc")
    head = lead + [f"{metric} gain {CONTROL_COLUMNS[c]}" for c in controls]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fraction, method, g in rows:
        cells = [METHOD_LABELS.get(method, method)] + ([fraction] if len(fractions) > 1 else [])
        lines.append("| " + " | ".join(cells + [_gain(g.get(c)) for c in controls]) + " |")
    return "\n".join(lines) + "\n"


def _header(results: dict[str, Any]) -> str:
    variant = f" ({results['variant']})" if results.get("variant") else ""
    data = results["data"]
    cfg = results["config"]
    protocols = results.get("protocols") or {}
    lines = [f"# {results['task']}{variant}", ""]
    if not results.get("complete", True):
        lines.append("- **INCOMPLETE**: the run has not finished (or died); the tables hold the runs done so far")
    lines += [f"- data: {data['summary']}; {data['scoring_units']} scoring units",
              f"- normalisation: {(data.get('preprocessing') or {}).get('normalisation', 'not stated')}",
              f"- protocols: " + "; ".join(f"{p} ({len(v['splits'])} split(s) by {v['unit']})" for p, v in protocols.items())
              + f"; labels {cfg['protocol']}, {cfg['seeds']} seed(s); "
              + ("mean ± sd over seeds of the mean over splits" if cfg["seeds"] > 1 else "mean over splits (one seed: no sd)")
              + "; 95 % CI: t-interval over the runs (splits x seeds)",
              f"- codec: {results.get('codec', '-')} (id {results.get('codec_id')})"]
    for control, text in (results.get("controls") or {}).items():
        lines.append(f"- control `{control}`: {text}")
    skipped_files = (data.get("preprocessing") or {}).get("skipped_files") or []
    if skipped_files:  # the results are on what could be read: say so first, name every file
        lines.insert(2, f"- **partial dataset**: {len(skipped_files)} file(s) could not be used and are not in these results: "
                     + "; ".join(f"`{f['path']}` ({f['reason']})" for f in skipped_files))
    for method, reason in results.get("skipped_methods", {}).items():
        lines.append(f"- {METHOD_LABELS.get(method, method)} skipped: {reason}")
    for protocol, failures in (results.get("failed_methods") or {}).items():
        for method, reason in failures.items():
            lines.append(f"- **{METHOD_LABELS.get(method, method)} failed** ({protocol}): {reason}")
    return "\n".join(lines) + "\n\n"


def markdown_report(results: dict[str, Any]) -> str:
    """``results.md``: the header, then per protocol the scores and the gains over the controls."""
    parts = [_header(results)]
    for protocol in results["results"]:
        parts.append(f"## {protocol}\n\n" + markdown_table(results, protocol))
        gains = gains_table(results, protocol)
        if gains:
            parts.append("\n" + gains)
        parts.append("\n")
    return "".join(parts)


def plot_confusion(results: dict[str, Any], path: str | Path, protocol: str | None = None) -> None:
    """One row-normalised confusion matrix per method of ``protocol`` (default the first; all labels,
    summed over splits and seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_protocol = results["results"][protocol or next(iter(results["results"]))]
    by_method = by_protocol[list(by_protocol)[-1]]
    classes = results["data"]["classes"]
    n = max(1, len(by_method))
    size = 1.2 + 0.45 * len(classes)
    fig, axes = plt.subplots(1, n, figsize=(size * n + 1, size + 0.8), squeeze=False)
    for ax, (method, res) in zip(axes[0], by_method.items()):
        cm = np.asarray(res["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(f"{METHOD_LABELS.get(method, method)}\nBAcc {res['summary']['balanced_accuracy']['mean']:.3f}",
                     fontsize=8)
    axes[0][0].set_ylabel("true")
    fig.suptitle(f"{results['task']} {results.get('variant') or ''} {protocol or ''}".strip(), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], output_dir: str | Path, figures: bool = True) -> Path:
    """Write ``results.json``, ``results.md`` and (with ``figures``) ``confusion_matrix.png`` (the first
    protocol; ``confusion_matrix_<protocol>.png`` for the others) into ``output_dir``; returns it.
    Each file is written to a temporary name and renamed, so a reader never sees half a file."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_text(output_dir / "results.json", json.dumps(results, indent=1) + "\n")
    _write_text(output_dir / "results.md", markdown_report(results))
    if figures:
        for i, protocol in enumerate(results["results"]):
            if any(results["results"][protocol].values()):
                name = "confusion_matrix.png" if i == 0 else f"confusion_matrix_{protocol}.png"
                plot_confusion(results, output_dir / name, protocol)
    return output_dir


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
