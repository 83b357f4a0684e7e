"""The same study on a real PostgreSQL server: one code path for every SQLAlchemy URL.

`.ci/run` starts a throwaway server and sets AUTOCOMPRESS_TEST_POSTGRES_URL; in CI a
missing server is a failure, elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect

from autocompress import run_study, verify
from tests.conftest import autocompress_cli, postgres_url_or_skip, tiny_study_dict, write_study


@pytest.fixture(scope="module")
def postgres_url() -> str:
    return postgres_url_or_skip()


def test_study_on_postgresql_front_export_and_tables(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"pg-{uuid.uuid4().hex[:8]}"
    study = tiny_study_dict(tmp_path, n_trials=3, study_name=name, storage=postgres_url)
    path = write_study(tmp_path, study)
    result = run_study(path)
    assert len(result.study.trials) == 3

    tables = set(inspect(create_engine(postgres_url)).get_table_names())
    assert {
        "autocompress_front_snapshots",
        "autocompress_front_memberships",
        "autocompress_exports",
        "trials",
    } <= tables

    process = autocompress_cli("front", str(path), "--json", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    fresh = optuna.load_study(study_name=name, storage=postgres_url)
    assert sorted(m["trial_number"] for m in json.loads(process.stdout)) == sorted(
        t.number for t in fresh.best_trials
    )
    out = result.export(tmp_path / "export")
    assert verify(out) == 4
