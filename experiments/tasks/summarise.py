"""One table from several evaluation runs: what the README's "Results here" shows.

    python -m experiments.tasks.summarise runs/eval/bonn-seizure/results.json runs/eval/eegmmi-.../results.json
    python -m experiments.tasks.summarise --readme README.md     # rewrite the README's table from README_RUNS

Rows: each run's protocols, each control and method; columns: balanced accuracy (mean over seeds
of the mean over splits) with its 95 % t-interval over the runs (splits x seeds), the runs counted,
and each method's gain over each control (paired over the runs, 95 % t-interval). The table is
written between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in the README with
``--readme`` (the results.json files behind it, :data:`README_RUNS`, are kept in
``experiments/tasks/results/``), and ``tests/test_readme_results.py`` checks that the README equals
what this prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from biocodec_jax.evaluation.report import CONTROL_COLUMNS, METHOD_LABELS

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The runs behind the README's table, in its order (copies of runs/eval/<run>/results.json).
README_RUNS = tuple(RESULTS_DIR / f"{name}.json" for name in
                    ("eegmmi-keep", "eegmmi-regress", "bonn-seizure", "emg_gestures-myo",
                     "emg_gestures-myo-baselines"))
METRIC = "balanced_accuracy"


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def run_label(results: dict) -> str:
    """``task (variant; option=value ...)``: what tells two runs of one task apart."""
    prep = (results.get("data") or {}).get("preprocessing") or {}
    extras = [f"ocular {prep['ocular']}"] if prep.get("ocular") not in (None, "keep") else []
    if results.get("codec") is None:  # a run of the PyTorch baselines alone (no codec given)
        extras.append("baselines run")
    variant = results.get("variant")
    inside = "; ".join([v for v in [variant] if v] + extras)
    return f"`{results['task'].split('-')[0]}`" + (f" ({inside})" if inside else "")


def table(runs: Sequence[dict]) -> str:
    """The markdown table of ``runs`` (parsed results.json), in the order given."""
    controls = list(CONTROL_COLUMNS)
    head = ["task", "protocol", "method", "BAcc [95 % CI]", "runs"] + [f"gain {CONTROL_COLUMNS[c]}" for c in controls]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for results in runs:
        label = run_label(results)
        for protocol, by_fraction in results["results"].items():
            fraction = "100%" if "100%" in by_fraction else list(by_fraction)[-1]
            gains = ((results.get("gains") or {}).get(protocol) or {}).get(fraction) or {}
            first = True
            for method, res in by_fraction[fraction].items():
                s = res["summary"][METRIC]
                cells = [label if first else "", protocol if first else "", METHOD_LABELS.get(method, method),
                         f"{s['mean']:.3f}{_ci(s.get('ci95'))}", str(s.get("n_runs", len(res["runs"])))]
                for control in controls:
                    g = (gains.get(method) or {}).get(control)
                    cells.append("" if not g or not g.get("n") else f"{g['mean']:+.3f}{_ci(g.get('ci95'))}")
                lines.append("| " + " | ".join(cells) + " |")
                first = False
            for method, reason in ((results.get("failed_methods") or {}).get(protocol) or {}).items():
                lines.append("| " + " | ".join(["", "", METHOD_LABELS.get(method, method), "failed", ""]
                                               + [""] * len(controls)) + " |")
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str, path: str = "README.md") -> str:
    """``text`` with what lies between the markers replaced by ``block``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def load_runs(paths) -> list[dict]:
    """The parsed results.json files at ``paths``."""
    return [json.loads(Path(p).read_text()) for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tasks.summarise", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", help="results.json files of evaluate runs (default: README_RUNS)")
    parser.add_argument("--readme", help="rewrite this file's results block instead of printing")
    args = parser.parse_args(argv)
    runs = []
    for path in args.results or README_RUNS:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            return 2
        if not runs[-1].get("complete", False):
            print(f"error: {path}: the run is incomplete (complete: false); only finished runs are summarised", file=sys.stderr)
            return 2
    block = table(runs)
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(replace_block(readme.read_text(), block, args.readme))
    else:
        print(block, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
