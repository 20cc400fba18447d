"""The report of one evaluation: ``results.json``, ``results.md`` (ours vs baselines) and ``confusion_matrix.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METHOD_LABELS = {
    "linear_probe": "BioCodec linear probe",
    "token_classifier": "BioCodec token classifier",
    "eegnet": "EEGNet (braindecode)",
    "shallow": "ShallowFBCSPNet (braindecode)",
}
METRIC_LABELS = {"balanced_accuracy": "BAcc", "auroc": "AUROC", "auc_pr": "AUC-PR",
                 "cohen_kappa": "Cohen's kappa", "weighted_f1": "weighted F1"}


def _mean_sd(summary: dict[str, Any]) -> str:
    """``mean ± sd`` over seeds; the mean alone for one seed (an sd over one value is not zero, it is undefined)."""
    if summary["sd"] is None:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ± {summary['sd']:.4f}"


def markdown_table(results: dict[str, Any]) -> str:
    """Rows: method (x label fraction); columns: the task's metrics as mean +- sd over seeds."""
    names = results["metric_names"]
    fractions = list(results["results"])
    lead = ["method"] + (["labels"] if len(fractions) > 1 else [])
    lines = ["| " + " | ".join(lead + [METRIC_LABELS.get(m, m) for m in names]) + " |",
             "|" + "---|" * (len(lead) + len(names))]
    for fraction in fractions:
        for method, res in results["results"][fraction].items():
            cells = [METHOD_LABELS.get(method, method)] + ([fraction] if len(fractions) > 1 else [])
            cells += [_mean_sd(res["summary"][m]) for m in names]
            lines.append("| " + " | ".join(cells) + " |")
    for method, reason in results.get("skipped_methods", {}).items():
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(["skipped"] * (len(lead) - 1 + len(names))) + " |")
    return "\n".join(lines) + "\n"


def _header(results: dict[str, Any]) -> str:
    variant = f" ({results['variant']})" if results.get("variant") else ""
    data = results["data"]
    cfg = results["config"]
    n_runs = len(results["splits"])
    lines = [f"# {results['task']}{variant}", "",
             f"- data: {data['summary']}; {data['scoring_units']} scoring units",
             f"- protocol: {cfg['protocol']}, {n_runs} subject-wise split(s) x {cfg['seeds']} seed(s); "
             + ("mean ± sd over seeds of the mean over splits" if cfg["seeds"] > 1 else "mean over splits (one seed: no sd)"),
             f"- codec: {results.get('codec', '-')} (id {results.get('codec_id')})"]
    skipped_files = (data.get("preprocessing") or {}).get("skipped_files") or []
    if skipped_files:  # the results are on what could be read: say so first, name every file
        lines.insert(2, f"- **partial dataset**: {len(skipped_files)} file(s) could not be used and are not in these results: "
                     + "; ".join(f"`{f['path']}` ({f['reason']})" for f in skipped_files))
    for method, reason in results.get("skipped_methods", {}).items():
        lines.append(f"- {METHOD_LABELS.get(method, method)} skipped: {reason}")
    return "\n".join(lines) + "\n\n"


def plot_confusion(results: dict[str, Any], path: str | Path) -> None:
    """One row-normalised confusion matrix per method (all labels, summed over splits and seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_method = results["results"][list(results["results"])[-1]]
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
    fig.suptitle(f"{results['task']} {results.get('variant') or ''}".strip(), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], output_dir: str | Path) -> Path:
    """Write the three files into ``output_dir``; returns it."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (output_dir / "results.md").write_text(_header(results) + markdown_table(results))
    plot_confusion(results, output_dir / "confusion_matrix.png")
    return output_dir
