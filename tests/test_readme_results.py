"""The README's downstream results table is what experiments/tasks/summarise.py makes of the committed runs."""

import json
from pathlib import Path

import pytest

from experiments.tasks import summarise

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_results_table_equals_the_committed_runs():
    text = README.read_text(encoding="utf-8")
    block = text.split(summarise.BEGIN, 1)[1].split(summarise.END, 1)[0]
    runs = summarise.load_runs(summarise.README_RUNS)
    assert all(r["complete"] for r in runs), "only finished runs go into the README"
    assert block == "\n" + summarise.table(runs)


def test_every_readme_run_has_its_controls_and_intervals():
    for path in summarise.README_RUNS:
        results = json.loads(path.read_text())
        if results["codec"] is None:  # a baselines-only run: no codec, so no random-codec control
            continue
        for protocol, by_fraction in results["results"].items():
            methods = by_fraction["100%"]
            assert {"chance", "random_codec", "handcrafted"} <= set(methods), (path.name, protocol)
            assert "linear_probe" in methods, (path.name, protocol)
            for res in methods.values():
                assert res["summary"]["balanced_accuracy"]["ci95"] is not None  # >= 2 runs: an interval
            assert set(results["gains"][protocol]["100%"]["linear_probe"]) == {"chance", "random_codec", "handcrafted"}


def test_summarise_refuses_an_incomplete_run(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"complete": False}))
    assert summarise.main([str(path)]) == 2
    assert "incomplete" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no <!-- results:begin -->"):
        summarise.replace_block("no markers", "x")
