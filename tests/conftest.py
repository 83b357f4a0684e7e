"""Shared fixtures: tiny but real studies (real SQLite, real onnxruntime, real data).

The teacher is small and the measurement short so a whole study takes seconds;
nothing the tests are about is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_SPACE: dict[str, Any] = {
    "pruning_ratio": {"low": 0.0, "high": 0.8, "step": 0.1},
    "pruning_importance": {"choices": ["l1", "l2", "taylor"]},
    "finetune_epochs": {"low": 0, "high": 3},
    "kd_temperature": {"low": 1.0, "high": 4.0},
    "kd_alpha": {"low": 0.0, "high": 1.0},
    "bits": {"choices": [32, 16, 8, 4]},
    "int8_mode": {"choices": ["static"]},  # credit refuses dynamic int8 (batch-dependent)
    "per_channel": {"choices": [True, False]},
    "int4_block_size": {"choices": [16]},
}


def tiny_study_dict(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A study on the embedded German credit data with a small teacher, all under tmp_path."""
    study: dict[str, Any] = {
        "study_name": "tiny",
        "search_space": TINY_SPACE,
        "storage": f"sqlite:///{tmp_path / 'study.db'}",
        "artifacts_dir": str(tmp_path / "artifacts"),
        "n_trials": 4,
        "task": {
            "kind": "credit",
            "data": {
                "path": "embedded:germancredit",
                "label": "creditability",
                "positive_label": "bad",
                "seed": 0,
            },
            "teacher": {"hidden_sizes": [64, 32], "epochs": 8, "patience": 4},
        },
        "constraints": {"max_accuracy_drop": 0.05},
        "target": {"batch_size": 32, "warmup": 2, "repeats": 5},
        "sampler": {"name": "tpe", "seed": 7},
        # One run per export: retraining finalists with more seeds is tested where it is
        # the point (tests/test_held_out.py), not in every test that exports.
        "export": {"dir": str(tmp_path / "exports"), "seeds": 1},
    }
    for key, value in overrides.items():
        study[key] = value
    return study


def note_md(artifacts_dir: Path, trial: Any) -> str:
    """A trial's note as kept in its `note.md` artifact (every trial has one), read from
    the study's artifact store under `artifacts_dir` (the study's `artifacts_dir`)."""
    from optuna.artifacts import FileSystemArtifactStore

    from autocompress.dashboard import trial_note

    return trial_note(trial, FileSystemArtifactStore(str(artifacts_dir / "trials")))


def write_study(tmp_path: Path, study: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture
def tiny_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Path of a tiny study file; the working directory is tmp_path (so runs/ lands there)."""
    monkeypatch.chdir(tmp_path)
    return write_study(tmp_path, tiny_study_dict(tmp_path))


def autocompress_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `autocompress` entry point in a separate process."""
    executable = shutil.which("autocompress", path=str(Path(sys.executable).parent))
    command = [executable] if executable else [sys.executable, "-m", "autocompress"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT checkpoint with the real MiniLM tokenizer (tests/text_fixtures.py)."""
    from tests.text_fixtures import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated labelled financial sentences as a CSV (text, label)."""
    from tests.text_fixtures import make_sentences

    path = tmp_path_factory.mktemp("sentences") / "sentences.csv"
    make_sentences().to_csv(path, index=False)
    return path


MLP_INPUT_DIM = 20


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLP exported the way the credit task exports (dynamic batch axis)."""
    import torch

    from autocompress.models import MLPClassifier

    torch.manual_seed(0)
    model = MLPClassifier(MLP_INPUT_DIM, [64, 32], 2).eval()
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    torch.onnx.export(
        model,
        (torch.randn(4, MLP_INPUT_DIM),),
        str(path),
        input_names=["features"],
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def feed(batch_size: int) -> Any:
    """A batch for `model_path`'s model."""
    import numpy as np

    rng = np.random.default_rng(0)
    return {"features": rng.normal(size=(batch_size, MLP_INPUT_DIM)).astype(np.float32)}


def postgres_url_or_skip() -> str:
    """The test server's URL (.ci/postgres.sh); in CI a missing server fails, elsewhere skips."""
    url = os.environ.get("AUTOCOMPRESS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("AUTOCOMPRESS_CI"):
            pytest.fail("CI must provide AUTOCOMPRESS_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("no PostgreSQL server: set AUTOCOMPRESS_TEST_POSTGRES_URL (.ci/postgres.sh)")
    return url


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """The URL of a new, empty schema on the test server (skips without one, as
    `postgres_url_or_skip`); the schema is dropped with everything in it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = postgres_url_or_skip()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        options = {"options": f"-csearch_path={schema}"}
        yield make_url(base).update_query_dict(options).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def empty_database(backend: str, sqlite_file: Path, prefix: str) -> Iterator[str]:
    """For a fixture parametrized over backends: `sqlite_file` (not created), or a new
    PostgreSQL schema named after `prefix`."""
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_file}"
        return
    with postgres_schema(prefix) as url:
        yield url


# --- The fault table: what was tried against autocompress and what happened ---------
# A test that tries a bad input or a fault calls `fault_table.record(...)` after its
# assertions passed, so a row exists only for a case that behaved as the row says.
# `pytest --fault-table=FAULTS.md` (one word: pytest reads a separate value as a test path
# before it knows the option) writes every recorded row of that run as a markdown
# table (the committed FAULTS.md is made this way, never by hand).

_FAULT_ROWS: list[dict[str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-table",
        metavar="PATH",
        default=None,
        help="write the bad inputs and faults this run tried, and their results, to PATH",
    )


class FaultTable:
    """Records one row per case: area, what was tried, what autocompress did."""

    def __init__(self, test_id: str) -> None:
        self.test_id = test_id

    def record(self, area: str, tried: str, result: str) -> None:
        _FAULT_ROWS.append({"area": area, "tried": tried, "result": result, "test": self.test_id})


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> FaultTable:
    return FaultTable(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--fault-table")
    if not path or not _FAULT_ROWS:
        return
    import platform
    import re

    def cell(text: str) -> str:
        text = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/\s']+", "<tmp>", text)
        return " ".join(text.split()).replace("|", "\\|")

    rows = sorted(_FAULT_ROWS, key=lambda r: (r["area"], r["tried"]))
    lines = [
        "# Bad inputs and faults tried, and what autocompress did",
        "",
        f"Generated by `pytest --fault-table={Path(path).name}` (tests/conftest.py) on "
        f"{platform.machine()}, Python {platform.python_version()}: {len(rows)} cases, "
        f"pytest exit status {exitstatus}. Each row is written only after its test's "
        "assertions passed.",
        "",
        "| area | tried | result | test |",
        "|---|---|---|---|",
        *(
            f"| {cell(r['area'])} | {cell(r['tried'])} | {cell(r['result'])} | "
            f"`{cell(r['test'])}` |"
            for r in rows
        ),
    ]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
