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
from autocompress.cost_summary import cost_control_lines
from autocompress.dashboard import (
    CHANGE_CONVENTION,
    change_with_interval,
    confidence_label,
    constraint_mode_label,
    interval_label,
    seed_runs,
    seeds_summary,
    short_change_label,
    split_label,
)
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
    axes.set_ylabel(_score_label(trials, score))
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
    selected_trial: int | None = None,
) -> ReportFiles:
    """Write `front.png` and a self-contained `report.html` (the PNG embedded) to `out_dir`.

    `champion_trial` is the trial in production, `challenger_trial` today's selection
    competing with it; `decision` is shown as `decision_tone`: `neutral` (nothing
    changed, e.g. the champion kept), `good` (a better model chosen) or `alert` (a
    person should look, e.g. the champion no longer meets the constraints).
    Latencies stored as noisy are marked in the front table and explained below it.
    "What was measured" says which split the search and the selection saw, the held-out
    split, the intervals and the constraint mode, and for `selected_trial` (the exported
    one; default: the challenger) its re-training with several seeds, if recorded.

    Both are rendered in memory first, then the folder is swapped in whole, so a reader
    never sees half a report or a page that does not match its plot. `out_dir` belongs
    to the report: a folder holding anything else is refused rather than replaced.
    """
    if decision_tone not in DECISION_TONES:
        raise ValueError(f"decision_tone {decision_tone!r} is not one of {DECISION_TONES}")
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    marked = _marked(study, champion_trial, challenger_trial)
    selected = _completed_member(study, selected_trial, "selected trial") or marked.challenger
    png = _png_bytes(
        plot_front(
            study, champion_trial=champion_trial, challenger_trial=challenger_trial, title=title
        )
    )
    page = _html_page(study, title, png, marked, (decision, decision_tone), sections, selected)
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


SCORE_LABELS = {"roc_auc": "ROC AUC (test split)"}  # trials stored before `search_split`


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


def _score_label(trials: list[FrozenTrial], score: str) -> str:
    """The y axis: ROC AUC says the split its scores are on (what the search saw)."""
    split = next((s for t in trials if (s := t.user_attrs.get("search_split")) is not None), None)
    if score == "roc_auc" and split:
        return f"ROC AUC ({split_label({'split': split.get('split')})})"
    return SCORE_LABELS.get(score) or _f1_label(trials)


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
td.interval { white-space: nowrap; }
ul.measured li { margin: .2rem 0; }
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
    selected: FrontMember | None = None,
) -> str:
    e = html.escape
    image = base64.b64encode(png).decode("ascii")
    front = compute_front(study)
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
        _front_table(
            front,
            marked,
            f"{score_key(study)}_drop",
            {t.number: t.user_attrs for t in _complete(study)},
        ),
        "<h2>What was measured</h2>",
        _measured(study, selected, len(front)),
    ]
    baselines = study.user_attrs.get(BASELINES_ATTR)
    if baselines:
        parts += [
            "<h2>Reference models</h2>",
            _baselines_table(baselines, _recorded(_complete(study), "search_split")),
        ]
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


def _front_table(
    front: list[FrontMember],
    marked: _Marked,
    headline: str = "f1_drop",
    attrs: dict[int, dict] | None = None,
) -> str:
    """The front sorted by latency; teacher, champion and challenger always shown, even
    off the front; noisy latencies marked, with a footnote saying what that means.
    Trials that recorded a held-out split add its `headline` change (e.g. `roc_auc_drop`)
    with its interval, and a footnote says which split each column is on (read from
    the member, else from its trial's user attributes `attrs`)."""
    attrs = attrs or {}
    on_front = {m.trial_number for m in front}
    rows = {m.trial_number: m for m in front}
    for member in (marked.teacher, marked.champion, marked.challenger):
        if member is not None:
            rows.setdefault(member.trial_number, member)
    ordered = sorted(rows.values(), key=lambda m: m.metrics.get("latency_p50_ms") or 0.0)
    credit = any(m.metrics.get("ks") is not None for m in ordered)
    held_outs = {m.trial_number: _recorded_by(m, "held_out", attrs) for m in ordered}
    held = next((h for h in held_outs.values() if h), None)
    columns = [*_COLUMNS[:5], *(c for c, _ in _CREDIT_COLUMNS if credit), *_COLUMNS[5:]]
    if held:
        level = confidence_label(held.get("confidence"))
        columns.append(f"held-out {short_change_label(headline)}, pt [{level} CI]")
    header = "".join(
        f'<th class="{"text" if c in _TEXT_COLUMNS else "num"}">{html.escape(c)}</th>'
        for c in columns
    )
    body = "".join(
        _front_row(
            m,
            marked,
            m.trial_number in on_front,
            credit,
            (headline, held_outs[m.trial_number]) if held else None,
        )
        for m in ordered
    )
    table = f'<table class="front"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'
    split = next((s for m in ordered if (s := _recorded_by(m, "search_split", attrs))), None)
    table += _splits_footnote(split, held)
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


def _recorded_by(member: FrontMember, key: str, attrs: dict[int, dict]) -> dict | None:
    """A member's record of `key` (held_out, search_split): its own, else its trial's."""
    value = member.metrics.get(key) or attrs.get(member.trial_number, {}).get(key)
    return value if isinstance(value, dict) and value else None


def _splits_footnote(split: dict | None, held: dict | None) -> str:
    """Which split the score columns and the held-out column are on (`` when the trials
    did not record it)."""
    if not split and not held:
        return ""
    said = []
    if split:
        said.append(
            f"Scores and Δ vs teacher: {split_label(split)}, what the search, the constraints "
            "and the selection saw."
        )
    if held:
        interval = interval_label(held)
        said.append(
            f"Held-out column: {split_label(held)}, never used for choosing; {CHANGE_CONVENTION}"
            " (Δ vs teacher is student − teacher, the opposite sign)"
            + (f"; [low, high] = {interval}" if interval else "")
            + "; — = not recorded."
        )
    return f'<p class="footnote splits">{html.escape(" ".join(said))}</p>'


def _front_row(
    member: FrontMember,
    marked: _Marked,
    on_front: bool,
    credit: bool,
    held_out: tuple[str, dict | None] | None = None,
) -> str:
    """One row; `held_out` (the headline change's name and the member's held-out record)
    adds the held-out column."""
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
    if held_out is not None:
        headline, held = held_out[0], held_out[1] or {}
        change = (held.get("changes") or {}).get(headline)
        interval = (held.get("intervals") or {}).get(headline)
        cells.append((change_with_interval(change, interval), "num interval"))
    tds = "".join(f'<td class="{kind}">{html.escape(text)}</td>' for text, kind in cells)
    classes = " ".join(roles) or "member"
    return f'<tr class="{classes}" data-trial="{member.trial_number}">{tds}</tr>'


def _baselines_table(baselines: dict[str, dict], search_split: dict | None = None) -> str:
    """What a bank would use instead, fitted on the same split, measured on the same
    target in the same study as the trials above (said when the trials' scores are on
    another split than the references')."""
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
        "stopping and threshold on the validation split), scored on the same split as the "
        "trials and timed on the same target, end to end from raw columns."
        f"{_other_split(search_split, baselines)}"
        "</p>"
    )


def _other_split(search_split: dict | None, baselines: dict[str, dict]) -> str:
    """Warn when the front's score columns are not on the references' split (references
    stored before they recorded `split` were scored on the test split)."""
    scored_on = {str(b.get("split", "test")) for b in baselines.values()}
    if not search_split or scored_on == {str(search_split.get("split"))}:
        return ""
    return html.escape(
        f" The front's score columns are on the {split_label(search_split)}: compare these "
        "with its held-out column, not with its score columns."
    )


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _recorded(trials: list[FrozenTrial], key: str, first: int | None = None) -> dict | None:
    """The trials' record of `key` (search_split, held_out, constraint_mode): trial
    `first`'s if it has one, else the first student's, else the teacher's."""
    ordered = sorted(
        trials, key=lambda t: (t.number != first, t.user_attrs.get("role") == "teacher")
    )
    return next((v for t in ordered if isinstance(v := t.user_attrs.get(key), dict) and v), None)


def _measured(study: optuna.Study, selected: FrontMember | None, on_front: int) -> str:
    """What the numbers above are: the split the search and the selection saw, the
    held-out split, the intervals, the constraint mode, how many trials the selection
    was made among, and the selected trial's re-training with several seeds."""
    e = html.escape
    trials = _complete(study)
    first = selected.trial_number if selected is not None else None
    split = _recorded(trials, "search_split", first)
    held = _recorded(trials, "held_out", first)
    mode = _recorded(trials, "constraint_mode", first)
    scored = sum(bool(t.user_attrs.get("held_out")) for t in trials)
    not_recorded = "not recorded (trials stored before it was)"
    items = [
        (
            f"Search and selection: {split_label(split)}; the objectives, the constraints "
            "and the selection saw only these scores."
            if split
            else f"Search and selection: the split is {not_recorded}."
        ),
        (
            f"Held out: {split_label(held)}, scored for {scored} of the {len(trials)} "
            "completed trials and never used for choosing."
            if held
            else f"Held out: {not_recorded}."
        ),
        (
            f"Intervals: {interval_label(held or split)} (the same resampled rows for the "
            "student and the teacher) around every change versus the teacher; "
            f"{CHANGE_CONVENTION}."
            if interval_label(held or split)
            else f"Intervals: {not_recorded}."
        ),
        (
            f"Constraints: judged on the {constraint_mode_label(mode)} of each change on the "
            f"{split_label(split) if split else 'search split'}."
            if mode
            else f"Constraints: the mode is {not_recorded}; such trials compared the point "
            "estimate with each limit."
        ),
        f"Selection made among {len(trials)} completed trial(s) "
        f"({len(feasible_complete_trials(study))} feasible, {on_front} on the front).",
        *_seeds_items(study, selected),
        *cost_control_lines(study.get_trials(deepcopy=False)),
    ]
    return '<ul class="measured">' + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>"


def _seeds_items(study: optuna.Study, selected: FrontMember | None) -> list[str]:
    """The selected trial re-trained with several seeds (or, with no selection named,
    every finalist that was)."""
    runs = seed_runs(study.user_attrs)
    names = [f"{score_key(study)}_drop"]
    if selected is None:
        return [
            f"Trial {number} (finalist) re-trained with {seeds_summary(record, names)}."
            for number, record in sorted(runs.items())
        ]
    number = selected.trial_number
    if number not in runs:
        return [f"Trial {number} (selected): not re-trained with more seeds (none recorded)."]
    return [f"Trial {number} (selected) re-trained with {seeds_summary(runs[number], names)}."]


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
