"""The study report: a real PNG plot and an offline HTML page, written all at once."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import matplotlib
import optuna
import pytest
from matplotlib.image import imread
from optuna.trial import TrialState, create_trial

from autocompress.api import StudyResult, run_study
from autocompress.errors import UserError
from autocompress.report import ReportFiles, plot_front, write_report
from tests.conftest import tiny_study_dict, write_study

DECISION = "champion kept: challenger 2% faster, within measurement noise <script>x()</script>"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    folder = tmp_path_factory.mktemp("report-study")
    return run_study(write_study(folder, tiny_study_dict(folder)), n_trials=4)


@pytest.fixture(scope="module")
def champion(result: StudyResult) -> int:
    """The last completed compressed trial, standing in for the one in production."""
    complete = result.study.get_trials(states=(TrialState.COMPLETE,))
    return [t.number for t in complete if t.user_attrs.get("role") != "teacher"][-1]


@pytest.fixture(scope="module")
def report(
    result: StudyResult, champion: int, tmp_path_factory: pytest.TempPathFactory
) -> ReportFiles:
    out = tmp_path_factory.mktemp("reports") / "nightly"
    return write_report(
        result.study,
        out,
        title="Nightly german credit",
        champion_trial=champion,
        decision=DECISION,
        sections=[("Machine", "cpu: <unknown> & 2 cores")],
    )


def test_png_is_a_real_plot(report: ReportFiles) -> None:
    assert report.png.name == "front.png" and report.png.parent == report.html.parent
    assert 10_000 < report.png.stat().st_size < 2_000_000
    pixels = imread(report.png)
    height, width = pixels.shape[:2]
    assert 400 <= height <= 2000 and 600 <= width <= 2000
    inked = 1.0 - (pixels[..., :3] > 0.98).all(axis=-1).mean()
    assert 0.01 < inked < 0.9, "a blank or filled image is not a plot"
    assert pixels[..., :3].std() > 0.05


def test_html_embeds_the_plot_and_is_offline(report: ReportFiles) -> None:
    page = report.html.read_text(encoding="utf-8")
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == report.png.read_bytes()
    assert not re.search(r"(src|href)=\"https?:", page), "nothing loaded from the network"
    assert "<script" not in page
    assert "Nightly german credit" in page and "tiny" in page and "UTC" in page


def test_html_shows_front_teacher_champion_and_decision(
    report: ReportFiles, result: StudyResult, champion: int
) -> None:
    page = report.html.read_text(encoding="utf-8")
    for member in result.front:
        assert f'data-trial="{member.trial_number}"' in page
    teacher = result.teacher
    assert teacher is not None
    assert re.search(rf'<tr class="[^"]*teacher[^"]*" data-trial="{teacher.trial_number}"', page)
    assert re.search(rf'<tr class="[^"]*champion[^"]*" data-trial="{champion}"', page)
    assert "champion kept: challenger 2% faster, within measurement noise" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<h2>Machine</h2><pre>cpu: &lt;unknown&gt; &amp; 2 cores</pre>" in page
    complete = len(result.study.get_trials(states=(TrialState.COMPLETE,)))
    assert f"{complete} complete" in page
    # A credit study: ranking and calibration columns, and what a bank would use instead.
    assert '<th class="num">AUC</th>' in page and '<th class="num">Brier</th>' in page
    assert "<h2>Reference models</h2>" in page
    for name, baseline in result.baselines.items():
        auc = f"{baseline['metrics']['roc_auc']:.4f}"
        assert re.search(
            rf'<tr class="reference"><td class="text">{name}</td>'
            rf'<td class="num">{auc}</td>',
            page,
        )


def test_a_kept_champion_is_neutral_and_the_challenger_is_labelled_challenger(
    result: StudyResult, champion: int, tmp_path: Path
) -> None:
    """A nightly that keeps its champion: no alarm colour, and today's selection is
    marked "challenger" in the table and the plot, never "champion"."""
    complete = result.study.get_trials(states=(TrialState.COMPLETE,))
    others = [t.number for t in complete if t.number != champion]
    challenger = others[-1]
    files = write_report(
        result.study,
        tmp_path / "kept",
        title="nightly",
        champion_trial=champion,
        challenger_trial=challenger,
        decision="champion kept: not faster beyond measurement noise",
        decision_tone="neutral",
    )
    page = files.html.read_text(encoding="utf-8")
    assert '<p class="decision neutral">' in page
    assert "decision alert" not in page
    rows = dict((n, c) for c, n in re.findall(r'<tr class="([^"]*)" data-trial="(\d+)"', page))
    assert "challenger" in rows[str(challenger)].split()
    assert "champion" not in rows[str(challenger)].split()
    assert "champion" in rows[str(champion)].split()
    challenger_row = page.split(f'data-trial="{challenger}">', 1)[1].split("</tr>", 1)[0]
    assert "challenger" in challenger_row and "champion" not in challenger_row
    labels = (
        plot_front(result.study, champion_trial=champion, challenger_trial=challenger)
        .axes[0]
        .get_legend_handles_labels()[1]
    )
    assert f"challenger (trial {challenger})" in labels
    assert f"champion (trial {champion})" in labels

    replaced = write_report(
        result.study,
        tmp_path / "replaced",
        title="nightly",
        champion_trial=champion,
        challenger_trial=challenger,
        decision="champion replaced: the champion no longer meets the constraints",
        decision_tone="alert",
    )
    assert '<p class="decision alert">' in replaced.html.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="decision_tone"):
        write_report(result.study, tmp_path / "bad", title="t", decision_tone="red")


def test_teacher_as_champion_is_one_row_with_both_roles(
    result: StudyResult, tmp_path: Path
) -> None:
    """When no student qualified, the teacher itself is in production."""
    teacher = result.teacher
    assert teacher is not None
    files = write_report(
        result.study, tmp_path / "r", title="t", champion_trial=teacher.trial_number
    )
    page = files.html.read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="([^"]*)" data-trial="(\d+)"', page)
    assert ("teacher champion", str(teacher.trial_number)) in rows
    assert sum("champion" in classes.split() for classes, _ in rows) == 1


def test_plot_marks_teacher_and_champion_without_touching_the_backend(
    result: StudyResult, champion: int
) -> None:
    backend = matplotlib.get_backend()
    figure = plot_front(result.study, champion_trial=champion)
    axes = figure.axes[0]
    labels = axes.get_legend_handles_labels()[1]
    assert "Pareto front (feasible)" in labels
    assert any(label.startswith("teacher (trial ") for label in labels)
    assert f"champion (trial {champion})" in labels
    assert axes.get_xlabel().startswith("latency p50") and axes.get_ylabel() == "F1 (macro)"
    assert matplotlib.get_backend() == backend


def _synthetic_trial(
    number: int, f1: float, latency: float, drop: float
) -> optuna.trial.FrozenTrial:
    """A completed trial as the text studies record it (objectives f1 and latency only)."""
    return create_trial(
        values=[f1, latency],
        user_attrs={
            "role": "teacher" if number == 0 else None,
            "metrics": {"accuracy": 0.9, "f1": f1, "f1_macro": f1},
            "measurement": {"latency_p50_ms": latency, "size_bytes": 1000, "batch_size": 8},
            "recipe_summary": f"recipe {number}",
        },
        constraints={"f1_drop": drop},
    )


def test_plot_reads_user_attrs_whatever_the_objectives() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (f1, latency, drop) in enumerate(
        [(0.90, 200.0, 0.0), (0.89, 20.0, -0.01), (0.70, 2.0, 0.15), (0.88, 50.0, -0.01)]
    ):
        study.add_trial(_synthetic_trial(number, f1, latency, drop))
    axes = plot_front(study).axes[0]
    labels = axes.get_legend_handles_labels()[1]
    assert "infeasible (over a drop limit)" in labels
    assert axes.get_xscale() == "log", "latencies spanning 100x are drawn on a log axis"
    assert axes.get_xlabel() == "latency p50 per batch of 8 (ms)"
    front_line = next(line for line in axes.get_lines() if line.get_label().startswith("Pareto"))
    assert list(front_line.get_xdata()) == [20.0, 200.0], "feasible front, sorted by latency"


def test_an_empty_study_still_gives_a_report(tmp_path: Path) -> None:
    study = optuna.create_study()
    assert plot_front(study).axes[0].texts[0].get_text() == "no completed trials yet"
    files = write_report(study, tmp_path / "empty", title="nothing yet")
    assert "trials: none" in files.html.read_text(encoding="utf-8")
    assert imread(files.png).size > 0


def test_a_failed_write_leaves_the_previous_report_whole(
    report: ReportFiles, result: StudyResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in report.html.parent.iterdir()}

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", fail)  # the PNG is written, the page is not
    with pytest.raises(OSError, match="disk full"):
        write_report(result.study, report.html.parent, title="again")
    fresh = report.html.parent.parent / "fresh"
    with pytest.raises(OSError, match="disk full"):
        write_report(result.study, fresh, title="first")
    assert {p.name: p.read_bytes() for p in report.html.parent.iterdir()} == before
    assert not fresh.exists()
    assert sorted(p.name for p in report.html.parent.parent.iterdir()) == ["nightly"]


def test_a_folder_holding_other_files_is_refused(result: StudyResult, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not part of a report"):
        write_report(result.study, tmp_path, title="oops")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_unknown_champion_is_a_user_error(result: StudyResult, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no completed trial 999"):
        write_report(result.study, tmp_path / "r", title="t", champion_trial=999)
    assert not (tmp_path / "r").exists()
