"""``hasnas report``: a self-contained HTML page and PNG figures, from studies with and without artifacts."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from test_artifacts import STUDY, build_study

from hasnas_optuna.artifacts import open_artifact_store
from hasnas_optuna.cli import main
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.dashboard import best_feasible_trials
from hasnas_optuna.report import _latex, write_report
from hasnas_optuna.study import run_search

PNG = b"\x89PNG\r\n\x1a\n"
REPORT_DIR = Path(__file__).parent / "artifacts" / "report"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, optuna.Study, Path]:
    return build_study(tmp_path_factory.mktemp("report"), tmp_path_factory.getbasetemp())


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_of_a_study_with_artifacts(tiny: tuple[str, optuna.Study, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    storage, study, _ = tiny
    out = REPORT_DIR  # kept (git-ignored) so the page can be looked at
    assert main(["report", "--storage", storage, "--study-name", "tiny", "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    for name in ("pareto.png", "costs.png", "best_layers.png", "progress.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(page)
    images = [attrs["src"] or "" for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == PNG for src in images)
    assert not [attrs for tag, attrs in parser.tags if tag in ("script", "link")]  # nothing to fetch
    best = best_feasible_trials(study)[0]
    assert f"Best feasible network: trial {best.number}" in page
    assert "<svg" in page and f"trial {best.number}" in page
    # the per-layer table is the trial's own cost_report.json artifact (measured rates), not a recomputation
    assert "recomputed" not in page
    assert re.search(r"<td class=\"l\">stem</td>", page)
    assert "| energy |" not in page and ">energy<" in page  # budgets table rendered as HTML


@pytest.mark.slow
def test_report_of_a_run_search_study_recomputes_costs(tmp_path: Path) -> None:
    """A study from the real runner, without artifacts: the best network's costs are recomputed."""
    data = {key: dict(value) for key, value in STUDY.items()}
    data["study"].update(name="plain", n_trials=2, objectives=["accuracy"], sampler="random")
    data["budgets"] = {"memory": 3000}
    config = StudyConfig.from_dict(data)
    study = run_search(config, storage=optuna.storages.InMemoryStorage(), out=None)
    written = write_report(study, tmp_path)
    assert {"pareto", "costs", "progress", "html"} <= set(written)
    page = written["html"].read_text(encoding="utf-8")
    if best_feasible_trials(study):
        assert written["best_layers"].read_bytes()[:8] == PNG
        assert "recomputed on neurosim-22nm at the trial&#x27;s measured spike rates" in page
    # run_search annotates the study with its budgets, so the report states them rather than infer them
    assert "Budgets inferred" not in page
    assert '<td class="l">memory</td><td class="">3,000 params</td>' in page


def test_user_errors_are_one_line(tiny: tuple[str, optuna.Study, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    storage, _, _ = tiny
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        (["--storage", storage, "--study-name", "nope", "--out", str(tmp_path)], "no study 'nope' in"),
        (["--storage", storage, "--study-name", "tiny", "--out", str(blocker / "x")], "cannot write to output folder"),
        (["--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study-name", "tiny", "--out", str(tmp_path)],
         "no SQLite file"),
        (["--storage", storage, "--study-name", "tiny", "--out", str(tmp_path), "--artifact-dir",
          str(tmp_path / "nowhere")], "artifact folder"),
    ]
    for argv, message in cases:
        assert main(["report", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hasnas report: error: ") and message in err and err.count("\n") == 1, err


def test_a_hostile_cost_artifact_is_escaped(tmp_path: Path) -> None:
    # anyone who can write to the study can write a trial's cost_report.json: nothing in it runs
    import json

    from hasnas_optuna.artifacts import COST_JSON, find_artifact

    storage, study, artifacts = build_study(tmp_path / "study", tmp_path / "cache")
    best = best_feasible_trials(study)[0]
    path = artifacts / find_artifact(study, best, COST_JSON).artifact_id
    report = json.loads(path.read_text())
    report["layers"][0].update(type="<script>alert(1)</script>", index='<img src=x onerror="alert(2)">',
                               name="</td><script>alert(3)</script>")
    path.write_text(json.dumps(report))
    write_report(study, tmp_path / "out", artifact_store=open_artifact_store(artifacts, create=False),
                 storage=storage)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(page)
    assert not [tag for tag, _ in parser.tags if tag == "script"]
    assert [attrs for tag, attrs in parser.tags if tag == "img" and "onerror" in attrs] == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;/td&gt;&lt;script&gt;alert(3)" in page


def test_report_writes_vector_figures_and_a_front_table(tiny: tuple[str, optuna.Study, Path],
                                                          tmp_path: Path) -> None:
    import csv

    _, study, _ = tiny
    written = write_report(study, tmp_path)
    for stem in ("pareto", "costs", "progress"):
        assert (tmp_path / f"{stem}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    best = best_feasible_trials(study)
    with written["front_csv"].open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["trial", "val_accuracy", "test_accuracy", "memory_params", "area_mm2", "latency_ms",
                             "energy_uj", "summary"]
    assert [int(r["trial"]) for r in rows] == [t.number for t in best][:10]
    assert rows[0]["summary"] == best[0].user_attrs["summary"]
    first = best[0]
    assert float(rows[0]["energy_uj"]) == pytest.approx(first.user_attrs["cost/energy_uj"])
    assert float(rows[0]["val_accuracy"]) == pytest.approx(first.user_attrs["val_accuracy"])
    tex = written["front_tex"].read_text(encoding="utf-8")
    assert tex.startswith(r"\begin{tabular}") and r"\toprule" in tex and tex.rstrip().endswith(r"\end{tabular}")
    assert _latex("a_b & 50% {x} #1 $ ~^") == r"a\_b \& 50\% \{x\} \#1 \$ \textasciitilde{}\textasciicircum{}"
    assert tex.count(r" \\") == 1 + len(rows)  # header plus one line per front trial
