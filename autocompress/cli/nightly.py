"""`autocompress nightly`: re-optimize, then keep or replace the champion.

Exit codes for schedulers: 0 done (champion kept or replaced, see the report);
1 the champion's files no longer match its manifest; 2 bad input;
75 another nightly run of this study holds the lock (try again later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autocompress.cli._common import (
    StorageOption,
    StudyFile,
    app,
    console,
    stoppable,
    user_errors,
)
from autocompress.cli.study import log_progress_messages, print_front, progress_bar
from autocompress.config import load_study_config


@app.command(epilog=__doc__.split("\n\n", 1)[1])
@user_errors
def nightly(
    study_file: StudyFile,
    storage: StorageOption = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", min=1, help="Sampled trials, on top of the warm starts"),
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Today's data file")] = None,
    rounds: Annotated[
        int, typer.Option("--rounds", min=3, help="Interleaved timing rounds per model")
    ] = 7,
    lock_ttl: Annotated[
        float, typer.Option("--lock-ttl", min=60, help="Seconds before a dead run's lock expires")
    ] = 6 * 3600,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Default: runs/reports")
    ] = None,
) -> None:
    """Re-optimize in a dated, warm-started study; replace the champion only if clearly better."""
    loaded = load_study_config(study_file, storage=storage, data=data)  # bad input answers fast
    import optuna

    from autocompress.nightly import run_nightly

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log_progress_messages()
    with stoppable(), progress_bar() as (progress, callback):
        outcome = run_nightly(
            loaded,
            n_trials=n_trials,
            rounds=rounds,
            lock_ttl_s=lock_ttl,
            report_dir=report_dir,
            callbacks=[callback],
            progress=False,
        )
    from autocompress.api import load_result

    result = load_result(loaded, study_name=outcome.study_name)
    print_front(result.front, result.teacher, f"Pareto front of {outcome.study_name}")
    verdict = "[yellow]kept[/]"
    if outcome.decision.replace:
        verdict = "[green]replaced[/]" if outcome.previous_champion else "[green]set[/]"
    console.print(
        f"warm-started trials: {outcome.warm_started or 'none (first night)'}\n"
        f"champion {verdict}: {outcome.decision.reason}\n"
        f"champion is now v{outcome.champion.version} ({outcome.champion.export_dir}); "
        f"today's selection is v{outcome.challenger.version}\n"
        f"report: [bold]{outcome.report.html}[/] (plot: {outcome.report.png})",
        highlight=False,
    )
