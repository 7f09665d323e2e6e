"""optuna-dashboard: columns, note, Pareto plot, the read-side view, and a real browser on ``hasnas dashboard``."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note
from test_artifacts import build_study

from hasnas_optuna import ConfigError
from hasnas_optuna.cli import main
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.dashboard import (
    DashboardView,
    annotate_study,
    best_feasible_trials,
    dashboard_app,
    pareto_figure,
    study_budgets,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).parent / "artifacts"


def constrained(value: Any, *, energy: float, slack: float, acc: float | None = None, trained: bool = True) -> Any:
    attrs = {"trained": trained, "cost/energy_uj": energy, "cost/memory_params": 100}
    if acc is not None:
        attrs["val_accuracy"] = acc
    return create_trial(values=value if isinstance(value, list) else None, value=None if isinstance(value, list)
                        else value, user_attrs=attrs, system_attrs={"constraints:energy": slack})


def two_objective_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "energy"])
    study.add_trial(constrained([0.9, 1.0], energy=1.0, slack=-0.5, acc=0.9))
    study.add_trial(constrained([0.95, 3.0], energy=3.0, slack=0.5, acc=0.95))  # best accuracy, infeasible
    study.add_trial(constrained([0.0, 0.5], energy=0.5, slack=-0.75, acc=None, trained=False))
    study.add_trial(constrained([0.8, 0.6], energy=0.6, slack=-0.7, acc=0.8))
    return study


def test_view_shows_legacy_constraints_and_columns_without_writing() -> None:
    study = two_objective_study()
    view = DashboardView(study._storage)
    shown = view.get_all_trials(study._study_id, deepcopy=False)
    assert [t.system_attrs["constraints"] for t in shown] == [[-0.5], [0.5], [-0.75], [-0.7]]
    assert [t.user_attrs["feasible"] for t in shown] == [1, 0, 1, 1]
    assert [t.user_attrs["slack/energy"] for t in shown] == [-0.5, 0.5, -0.75, -0.7]
    stored = study._storage.get_all_trials(study._study_id)
    assert all("constraints" not in t.system_attrs and "feasible" not in t.user_attrs for t in stored)
    assert all(t.constraints == {"energy": s} for t, s in zip(stored, [-0.5, 0.5, -0.75, -0.7], strict=True))
    assert view.get_trial(stored[1]._trial_id).user_attrs["feasible"] == 0


def test_single_objective_best_trial_is_the_best_feasible() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(constrained(0.9, energy=1.0, slack=-0.5, acc=0.9))
    study.add_trial(constrained(0.99, energy=3.0, slack=0.5, acc=0.99))
    assert study._storage.get_best_trial(study._study_id).number == 1  # what optuna-dashboard shows by itself
    assert DashboardView(study._storage).get_best_trial(study._study_id).number == 0
    assert study.best_trial.number == 0  # and what Optuna 5 says


def _call(app: Any, path: str) -> tuple[str, bytes]:
    """One GET through the WSGI app (the real optuna-dashboard app, no server)."""
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0",
               "wsgi.errors": sys.stderr}
    body = b"".join(app(environ, lambda s, h, exc=None: status.append(s)))
    return status[0], body


def test_dashboard_best_trials_are_the_feasible_front() -> None:
    study = two_objective_study()
    status, body = _call(dashboard_app(study._storage), f"/api/studies/{study._study_id}")
    assert status.startswith("200")
    detail = json.loads(body)
    best = sorted(t["number"] for t in detail["best_trials"])
    assert best == [0, 2, 3] == sorted(t.number for t in study.best_trials)  # trial 1 is infeasible
    assert [t["constraints"] for t in detail["trials"]] == [[-0.5], [0.5], [-0.75], [-0.7]]
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    assert sortable["feasible"] and sortable["slack/energy"] and sortable["slack/max"] and sortable["cost/energy_uj"]


def test_pareto_figure_tells_feasible_from_infeasible() -> None:
    study = two_objective_study()
    fig = pareto_figure(study, budgets={"energy": 2.0})
    traces = {trace.name: trace for trace in fig.data}
    assert list(traces["feasible"].x) == [1.0, 0.6] and list(traces["trained, breaks a budget"].x) == [3.0]
    assert list(traces["rejected before training"].y) == [0.0]
    assert list(traces["feasible Pareto front"].x) == [0.6, 1.0]
    assert fig.layout.shapes[0].x0 == 2.0  # the budget line
    with pytest.raises(ConfigError, match="cost='speed' is not a cost"):
        pareto_figure(study, cost="speed")


def test_budgets_come_from_the_config_or_the_trials() -> None:
    study = two_objective_study()
    assert study_budgets(study) == ({"energy": 2.0}, "inferred")
    config = StudyConfig.from_dict({"budgets": {"energy": 2.5, "memory": 1000},
                                    "study": {"objectives": ["accuracy", "energy"]}})
    note = annotate_study(study, config=config)
    assert study_budgets(study) == ({"memory": 1000.0, "energy": 2.5}, "config")
    assert study.user_attrs["hasnas/hardware"] == {"preset": "neurosim-22nm", "overrides": {}, "searched_knobs": False,
                                                   "quantize": True, "adc_aware": False}
    assert "**Best feasible trial: #0**, validation accuracy 0.900" in note
    assert "| energy | 2.5 µJ | 3 of 4 |" in note and "`neurosim-22nm`" in note


def test_annotate_study_writes_only_what_changed() -> None:
    study = two_objective_study()
    annotate_study(study)
    system = dict(study._storage.get_study_system_attrs(study._study_id))
    assert any(key.startswith("dashboard:plot_data:hasnas-pareto-energy:") for key in system)
    annotate_study(study)
    assert study._storage.get_study_system_attrs(study._study_id) == system  # same note version, same plot
    study.add_trial(constrained([0.97, 0.7], energy=0.7, slack=-0.65, acc=0.97))
    note = annotate_study(study)
    assert get_note(study) == note and "**Best feasible trial: #4**" in note
    assert best_feasible_trials(study)[0].number == 4


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=storage, study_name="a")
    for argv, message in [
        (["--storage", storage, "--study-name", "b"], "no study 'b' in"),
        (["--storage", f"sqlite:///{tmp_path / 'x.db'}"], "no SQLite file"),
        (["--storage", storage, "--artifact-dir", str(tmp_path / "none")], "artifact folder"),
    ]:
        assert main(["dashboard", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hasnas dashboard: error: ") and message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--storage", storage, "--port", "70000"])
    assert exit_info.value.code == 2
    assert "'70000' is not a port number" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# A real browser against `hasnas dashboard`

@pytest.fixture
def server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, optuna.Study]]:
    """``hasnas dashboard`` on a free loopback port for the shared tiny study; always stopped."""
    storage, study, _ = build_study(tmp_path / "study", tmp_path_factory.getbasetemp())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hasnas_optuna.cli", "dashboard", "--storage", storage, "--study-name", "tiny",
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard/studies/\d+", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        base = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/meta", timeout=2) as reply:
                    assert json.load(reply)["artifact_is_available"] is True
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield match.group(0), study
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def chromium(url: str, tmp_path: Path, *, screenshot: Path | None = None, size: str = "1400,2400") -> str:
    """Render ``url`` in headless Chromium (letting the app fetch and draw); return the DOM, maybe save a screenshot."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={size}", "--virtual-time-budget=8000",
    ]
    command += ["--dump-dom"] + ([f"--screenshot={screenshot}"] if screenshot is not None else [])
    result = subprocess.run([*command, url], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")
def test_browser_shows_the_trials_table_and_the_pareto_plot(server: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, study = server
    SHOTS.mkdir(exist_ok=True)
    page = chromium(url, tmp_path, screenshot=SHOTS / "dashboard_study.png")
    plot = page.find('id="user-defined-plot:hasnas-pareto-energy"')
    assert plot > 0, "the Pareto plot is not on the study page"
    plot_html = page[plot:page.find("</svg>", page.find("</svg>", plot) + 1)]
    assert "js-plotly-plot" in page[plot - 200:plot] and "feasible vs infeasible" in plot_html
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert plot_html.count('class="point plotly-customdata"') == len(complete)  # one marker per trial
    table_page = chromium(url + "/smartSelection", tmp_path, screenshot=SHOTS / "dashboard_table.png", size="1400,3000")
    table = table_page[table_page.find("<table"):table_page.find("</table>")]
    headers = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table, flags=re.S)]
    for column in ("feasible", "slack/memory", "slack/energy", "slack/max", "cost/energy_uj", "cost/memory_params"):
        assert any(h.startswith(f"UserAttribute {column}sorted") for h in headers), (column, headers)
    assert table.count("<tr") == len(study.trials) + 1  # header row + one row per trial
    assert (SHOTS / "dashboard_study.png").stat().st_size > 10_000
    study_id = url.rsplit("/", 1)[1]
    with urllib.request.urlopen(url.split("/dashboard")[0] + f"/api/studies/{study_id}", timeout=10) as reply:
        detail = json.load(reply)
    for trial in detail["trials"]:  # artifacts are served, and feasibility reaches the dashboard's own plots
        names = sorted(a["filename"] for a in trial["artifacts"])
        trained = study.trials[trial["number"]].user_attrs["trained"]
        assert (names == ["architecture.json", "architecture.svg", "cost_layers.csv", "cost_report.json",
                          "training_curve.svg", "weights.pt"]) if trained else names == []
        assert trial["constraints"] == [study.trials[trial["number"]].constraints[n] for n in ("memory", "energy")]
    assert all(study.trials[t["number"]].user_attrs["feasible"] for t in detail["best_trials"])


@pytest.fixture
def started(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start ``hasnas dashboard`` with extra flags on a free port; yields (base URL, first line, storage)."""
    procs: list[subprocess.Popen[str]] = []
    storage, _, _ = build_study(tmp_path / "study", tmp_path_factory.getbasetemp())

    def start(*flags: str) -> tuple[str, str, str]:
        proc = subprocess.Popen([sys.executable, "-m", "hasnas_optuna.cli", "dashboard", "--storage", storage,
                                 "--study-name", "tiny", "--port", "0", "--no-annotate", *flags],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        base = match.group(0)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/meta", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        return base, line, storage

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _request(url: str, method: str = "GET", *, host: str | None = None, cookie: str | None = None) -> int:
    request = urllib.request.Request(url, method=method)
    if host is not None:
        request.add_header("Host", host)
    if cookie is not None:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_dashboard_is_read_only_and_checks_the_host(started: Any) -> None:
    base, line, storage = started()
    study = re.search(r"/studies/(\d+)", line).group(1)  # type: ignore[union-attr]
    assert "read-only" in line and "token" not in line
    assert _request(f"{base}/api/studies") == 200
    assert _request(f"{base}/api/studies", host="rebound.example") == 403  # DNS rebinding
    for method, path in (("DELETE", f"/api/studies/{study}"), ("PUT", f"/api/studies/{study}/note"),
                         ("POST", "/api/studies")):
        assert _request(base + path, method) == 403, (method, path)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["tiny"]  # nothing deleted


def test_writes_need_the_token_printed_at_start(started: Any) -> None:
    base, line, storage = started("--allow-writes")
    token = re.search(r"\?token=([\w-]+)", line).group(1)  # type: ignore[union-attr]
    study = re.search(r"/studies/(\d+)", line).group(1)  # type: ignore[union-attr]
    assert _request(f"{base}/api/studies/{study}", "DELETE") == 403
    assert _request(f"{base}/api/studies/{study}", "DELETE", cookie="hasnas_token=guess") == 403
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{base}/dashboard/?token={token}", timeout=10) as reply:  # sets the cookie
        assert reply.status == 200
    with opener.open(urllib.request.Request(f"{base}/api/studies/{study}", method="DELETE"), timeout=10) as reply:
        assert reply.status == 204
    assert optuna.get_all_study_summaries(storage) == []
