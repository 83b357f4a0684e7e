"""What a person looks at after a study: the Pareto plot (PNG) and one offline HTML page.

Everything is read from each trial's user attributes (`metrics`, `measurement`), never
from `trial.values`, so the plot and the table look the same whatever objectives a
study optimises. Matplotlib is used through `Figure` and the Agg canvas only: callers
with an interactive backend keep it.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import optuna
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from autocompress.atomic import atomic_directory
from autocompress.baselines import BASELINES_ATTR
from autocompress.errors import UserError
from autocompress.front import FrontMember, compute_front, feasible_complete_trials, teacher_member

HTML_NAME = "report.html"
PNG_NAME = "front.png"
PNG_DPI = 120
LOG_SCALE_SPAN = 10.0  # latencies spanning more than this factor are drawn on a log axis


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_report` put the page and the plot."""

    html: Path
    png: Path


DECISION_TONES = ("neutral", "good", "alert")


@dataclass(frozen=True)
class _Marked:
    """The trials a reader looks for first: the baseline, the one in production and
    the one challenging it today."""

    teacher: FrontMember | None
    champion: FrontMember | None
    challenger: FrontMember | None = None

    def roles(self, member: FrontMember) -> list[str]:
        return [
            role
            for role, other in (
                ("teacher", self.teacher),
                ("champion", self.champion),
                ("challenger", self.challenger),
            )
            if other is not None and other.trial_number == member.trial_number
        ]


def plot_front(
    study: optuna.Study,
    *,
    champion_trial: int | None = None,
    challenger_trial: int | None = None,
    title: str | None = None,
) -> Figure:
    """Latency (p50) against the study's score (ROC AUC for credit studies, F1 otherwise)
    for every completed trial, the feasible front highlighted, the teacher and (if
    given) the champion and the challenger marked and labelled.

    A champion or challenger that is not a completed trial of this study is a `UserError`.
    """
    score = score_key(study)
    trials = _plottable_trials(study, score)
    marked = _marked(study, champion_trial, challenger_trial)
    figure = Figure(figsize=(8.0, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title or f"Pareto front of {study.study_name}")
    axes.set_xlabel(_latency_label(trials))
    axes.set_ylabel(SCORE_LABELS.get(score) or _f1_label(trials))
    if not trials:
        axes.text(0.5, 0.5, "no completed trials yet", ha="center", transform=axes.transAxes)
        return figure
    _draw_trials(axes, trials, {t.number for t in feasible_complete_trials(study)}, score)
    _draw_front(axes, compute_front(study), score)
    _draw_marked(axes, marked, score)
    if _span(trials) > LOG_SCALE_SPAN:
        axes.set_xscale("log")
    axes.margins(x=0.08, y=0.12)  # room for the teacher and champion labels
    axes.grid(True, which="both", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    return figure


def write_report(
    study: optuna.Study,
    out_dir: Path,
    *,
    title: str,
    champion_trial: int | None = None,
    challenger_trial: int | None = None,
    decision: str | None = None,
    decision_tone: str = "neutral",
    sections: Sequence[tuple[str, str]] = (),
) -> ReportFiles:
    """Write `front.png` and a self-contained `report.html` (the PNG embedded) to `out_dir`.

    `champion_trial` is the trial in production, `challenger_trial` today's selection
    competing with it; `decision` is shown as `decision_tone`: `neutral` (nothing
    changed, e.g. the champion kept), `good` (a better model chosen) or `alert` (a
    person should look, e.g. the champion no longer meets the constraints).
    Latencies stored as noisy are marked in the front table and explained below it.

    Both are rendered in memory first, then the folder is swapped in whole, so a reader
    never sees half a report or a page that does not match its plot. `out_dir` belongs
    to the report: a folder holding anything else is refused rather than replaced.
    """
    if decision_tone not in DECISION_TONES:
        raise ValueError(f"decision_tone {decision_tone!r} is not one of {DECISION_TONES}")
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    marked = _marked(study, champion_trial, challenger_trial)
    png = _png_bytes(
        plot_front(
            study, champion_trial=champion_trial, challenger_trial=challenger_trial, title=title
        )
    )
    page = _html_page(study, title, png, marked, (decision, decision_tone), sections)
    with atomic_directory(out_dir, overwrite=True) as staging:
        (staging / PNG_NAME).write_bytes(png)
        (staging / HTML_NAME).write_text(page, encoding="utf-8")
    return ReportFiles(html=out_dir / HTML_NAME, png=out_dir / PNG_NAME)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to swap out a folder that holds more than an earlier report."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; a report needs a folder of its own")
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in {HTML_NAME, PNG_NAME})
    if foreign:
        raise UserError(
            f"{out_dir} holds files that are not part of a report ({', '.join(foreign[:5])}); "
            "the report replaces its folder whole, so choose a new or empty folder"
        )


# --- reading the study -------------------------------------------------------------


SCORE_LABELS = {"roc_auc": "ROC AUC (test split)"}


def score_key(study: optuna.Study) -> str:
    """What the plot's y axis shows: `roc_auc` when the study ranks by it (credit
    studies judge ranking quality), else `f1`."""
    return "roc_auc" if "roc_auc" in (study.metric_names or []) else "f1"


def _plottable_trials(study: optuna.Study, score: str) -> list[FrozenTrial]:
    """Completed trials that recorded both a latency and the plotted score."""
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if _latency(trial) is not None and _score(trial, score) is not None
    ]


def _latency(trial: FrozenTrial) -> float | None:
    return trial.user_attrs.get("measurement", {}).get("latency_p50_ms")


def _score(trial: FrozenTrial, score: str) -> float | None:
    return trial.user_attrs.get("metrics", {}).get(score)


def _marked(
    study: optuna.Study, champion_trial: int | None, challenger_trial: int | None = None
) -> _Marked:
    return _Marked(
        teacher=teacher_member(study),
        champion=_completed_member(study, champion_trial, "champion"),
        challenger=_completed_member(study, challenger_trial, "challenger"),
    )


def _completed_member(study: optuna.Study, number: int | None, role: str) -> FrontMember | None:
    if number is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.number == number:
            return FrontMember.from_trial(trial)
    raise UserError(
        f"study {study.study_name!r} has no completed trial {number} to mark as the {role}"
    )


def _f1_label(trials: list[FrozenTrial]) -> str:
    """Say which average `f1` is; it is recorded beside its macro and positive-class twins."""
    metrics = [t.user_attrs["metrics"] for t in trials]
    averages = [
        name
        for name, key in (("positive class", "f1_positive"), ("macro", "f1_macro"))
        if metrics and all(m.get(key) == m["f1"] for m in metrics)
    ]
    return f"F1 ({averages[0]})" if len(averages) == 1 else "F1"


def _latency_label(trials: list[FrozenTrial]) -> str:
    batches = {t.user_attrs["measurement"].get("batch_size") for t in trials}
    if len(batches) == 1 and None not in batches:
        return f"latency p50 per batch of {batches.pop()} (ms)"
    return "latency p50 (ms)"


def _span(trials: list[FrozenTrial]) -> float:
    latencies = [_latency(t) for t in trials]
    low = min(latencies)
    return max(latencies) / low if low > 0 else float("inf")


# --- drawing -----------------------------------------------------------------------


def _draw_trials(axes: Axes, trials: list[FrozenTrial], feasible: set[int], score: str) -> None:
    """Every completed trial as a small grey point; infeasible ones hollow."""
    groups = ((True, "completed trials"), (False, "infeasible (over a drop limit)"))
    for is_feasible, label in groups:
        group = [t for t in trials if (t.number in feasible) == is_feasible]
        if not group:
            continue
        axes.scatter(
            [_latency(t) for t in group],
            [_score(t, score) for t in group],
            s=18,
            facecolors="0.6" if is_feasible else "none",
            edgecolors="0.45",
            linewidths=0.8,
            label=label,
            zorder=2,
        )


def _draw_front(axes: Axes, front: list[FrontMember], score: str) -> None:
    """The feasible front as a step line through its members, sorted by latency."""
    members = sorted(front, key=lambda m: m.metrics["latency_p50_ms"])
    if not members:
        return
    axes.step(
        [m.metrics["latency_p50_ms"] for m in members],
        [m.metrics[score] for m in members],
        where="post",
        color="tab:blue",
        marker="o",
        markersize=6,
        linewidth=1.5,
        label="Pareto front (feasible)",
        zorder=3,
    )


def _draw_marked(axes: Axes, marked: _Marked, score: str) -> None:
    """Teacher, champion and challenger: a distinct marker each and a label with the
    trial number."""
    styles = (
        (marked.teacher, "teacher", "*", "tab:orange", 220, (8, 8)),
        (marked.champion, "champion", "D", "tab:green", 80, (8, -16)),
        (marked.challenger, "challenger", "s", "tab:purple", 60, (8, -28)),
    )
    for member, role, marker, color, size, offset in styles:
        if member is None:
            continue
        point = (member.metrics["latency_p50_ms"], member.metrics[score])
        axes.scatter(
            *point,
            marker=marker,
            s=size,
            color=color,
            edgecolors="black",
            linewidths=0.8,
            label=f"{role} (trial {member.trial_number})",
            zorder=4,
        )
        axes.annotate(
            f"{role} #{member.trial_number}",
            point,
            xytext=offset,
            textcoords="offset points",
            fontsize="small",
            color=color,
        )


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


# --- the page ------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
.meta { color: #555; }
.decision { border-left: 4px solid #6b7280; background: #f3f4f6; padding: .6rem 1rem; }
.decision.good { border-left-color: #2ca02c; background: #eef8ee; }
.decision.alert { border-left-color: #d62728; background: #fdf3f3; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: right; }
td.text, th.text { text-align: left; }
tr.teacher { background: #fff4e5; }
tr.champion { background: #e9f6e9; font-weight: 600; }
tr.challenger { background: #f1ecf8; }
td.noisy { color: #a15c00; }
.footnote { color: #555; font-size: .85rem; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; }
"""

NOISY_MARK = "*"
_COLUMNS = ("trial", "role", "recipe", "accuracy", "F1", "p50 ms", "size KB", "Δ vs teacher")
# Credit studies add ranking and calibration (what a credit model is judged by).
_CREDIT_COLUMNS = (("AUC", "roc_auc"), ("KS", "ks"), ("Brier", "brier"))
_TEXT_COLUMNS = {"role", "recipe", "Δ vs teacher"}


def _html_page(
    study: optuna.Study,
    title: str,
    png: bytes,
    marked: _Marked,
    decision: tuple[str | None, str],
    sections: Sequence[tuple[str, str]],
) -> str:
    e = html.escape
    image = base64.b64encode(png).decode("ascii")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        _meta(study),
    ]
    text, tone = decision
    if text:
        parts.append(f'<p class="decision {tone}"><strong>Decision:</strong> {e(text)}</p>')
    parts += [
        "<h2>Pareto plot</h2>",
        f'<img src="data:image/png;base64,{image}" alt="{e(f"Pareto plot of {title}")}">',
        f'<p class="meta">Also saved as {PNG_NAME} beside this page.</p>',
        "<h2>Front</h2>",
        _front_table(compute_front(study), marked),
    ]
    baselines = study.user_attrs.get(BASELINES_ATTR)
    if baselines:
        parts += ["<h2>Reference models</h2>", _baselines_table(baselines)]
    for heading, text in sections:
        parts.append(f"<h2>{e(heading)}</h2><pre>{e(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _meta(study: optuna.Study) -> str:
    """When, which study, how many trials in each state, and what was optimised."""
    e = html.escape
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    counts = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
    names = study.metric_names or [f"value {i}" for i in range(len(study.directions))]
    arrows = {"MAXIMIZE": "↑", "MINIMIZE": "↓"}
    objectives = ", ".join(
        f"{name} {arrows.get(d.name, '')}" for name, d in zip(names, study.directions, strict=False)
    )
    return (
        f'<p class="meta">Generated {e(generated)} · study <code>{e(study.study_name)}</code>'
        f" · trials: {e(states)} · objectives: {e(objectives)}</p>"
    )


def _front_table(front: list[FrontMember], marked: _Marked) -> str:
    """The front sorted by latency; teacher, champion and challenger always shown, even
    off the front; noisy latencies marked, with a footnote saying what that means."""
    on_front = {m.trial_number for m in front}
    rows = {m.trial_number: m for m in front}
    for member in (marked.teacher, marked.champion, marked.challenger):
        if member is not None:
            rows.setdefault(member.trial_number, member)
    ordered = sorted(rows.values(), key=lambda m: m.metrics.get("latency_p50_ms") or 0.0)
    credit = any(m.metrics.get("ks") is not None for m in ordered)
    columns = [*_COLUMNS[:5], *(c for c, _ in _CREDIT_COLUMNS if credit), *_COLUMNS[5:]]
    header = "".join(
        f'<th class="{"text" if c in _TEXT_COLUMNS else "num"}">{html.escape(c)}</th>'
        for c in columns
    )
    body = "".join(_front_row(m, marked, m.trial_number in on_front, credit) for m in ordered)
    table = f'<table class="front"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'
    noisy = [m for m in ordered if m.noisy]
    if not noisy:
        return table
    notes = "; ".join(f"trial {m.trial_number}: {m.noise_note()}" for m in noisy)
    return table + (
        f'<p class="footnote noisy">{NOISY_MARK} noisy latency: the timings stayed spread '
        "wider than target.max_cv after every re-measurement (the machine was shared or "
        "busy), so this p50 may be off and may not rank the trial against close ones "
        f"({html.escape(notes)}).</p>"
    )


def _front_row(member: FrontMember, marked: _Marked, on_front: bool, credit: bool) -> str:
    roles = marked.roles(member)
    role_text = ", ".join(roles) or "front"
    if not on_front:
        role_text += " (not on the front)"
    m = member.metrics
    cells = [
        (str(member.trial_number), "num"),
        (role_text, "text"),
        (str(m.get("recipe") or ""), "text"),
        (_number(m.get("accuracy"), ".4f"), "num"),
        (_number(m.get("f1"), ".4f"), "num"),
        *((_number(m.get(key), ".4f"), "num") for _, key in _CREDIT_COLUMNS if credit),
        (
            _number(m.get("latency_p50_ms"), ".3f") + (f" {NOISY_MARK}" if member.noisy else ""),
            "num noisy" if member.noisy else "num",
        ),
        (_number(None if m.get("size_bytes") is None else m["size_bytes"] / 1024, ".1f"), "num"),
        (_delta_vs_teacher(member, marked.teacher), "text"),
    ]
    tds = "".join(f'<td class="{kind}">{html.escape(text)}</td>' for text, kind in cells)
    classes = " ".join(roles) or "member"
    return f'<tr class="{classes}" data-trial="{member.trial_number}">{tds}</tr>'


def _baselines_table(baselines: dict[str, dict]) -> str:
    """What a bank would use instead, fitted on the same split, measured on the same
    target in the same study as the trials above."""
    e = html.escape
    columns = ("model", "AUC", "KS", "Brier", "accuracy", "F1", "p50 ms", "size KB")
    header = "".join(
        f'<th class="{"text" if c == "model" else "num"}">{e(c)}</th>' for c in columns
    )
    rows = []
    for name, baseline in baselines.items():
        m, measured = baseline["metrics"], baseline["measurement"]
        cells = [_number(m.get(key), ".4f") for key in ("roc_auc", "ks", "brier", "accuracy", "f1")]
        cells += [
            _number(measured.get("latency_p50_ms"), ".3f"),
            _number(measured.get("size_bytes", 0) / 1024, ".1f"),
        ]
        tds = "".join(f'<td class="num">{e(c)}</td>' for c in cells)
        rows.append(f'<tr class="reference"><td class="text">{e(name)}</td>{tds}</tr>')
    return (
        f'<table class="front"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}'
        '</tbody></table><p class="meta">Fitted on the same training split (early '
        "stopping and threshold on the validation split), scored on the same test split "
        "and timed on the same target, end to end from raw columns.</p>"
    )


def _delta_vs_teacher(member: FrontMember, teacher: FrontMember | None) -> str:
    """Accuracy and F1 change in percentage points, and the speed-up in p50 latency."""
    if teacher is None:
        return "no teacher"
    if member.trial_number == teacher.trial_number:
        return "baseline"
    m, t = member.metrics, teacher.metrics
    parts = [
        f"{label} {100 * (m[key] - t[key]):+.1f} pt"
        for label, key in (("AUC", "roc_auc"), ("acc", "accuracy"), ("F1", "f1"))
        if m.get(key) is not None and t.get(key) is not None
    ]
    mine, theirs = m.get("latency_p50_ms"), t.get("latency_p50_ms")
    if mine and theirs:
        ratio = theirs / mine
        parts.append(f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower")
    return ", ".join(parts)


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)
