"""The README's "use an export without autocompress" section, run where autocompress is not.

A fresh virtualenv gets only onnxruntime and pandas (the versions installed here, so pip
finds them in its cache); the README's snippet scores a raw CSV of held-out applicants
(empty cells, an unseen category, a number written as text) and must give the very
probabilities the in-Python pipeline gives for the same rows.
"""

from __future__ import annotations

import os
import re
import subprocess
import venv
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from autocompress import run_study
from autocompress.tasks import build_task
from tests.conftest import tiny_study_dict, write_study

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Using an export without autocompress"


def readme_snippet() -> str:
    text = README.read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"README.md: no python block under {SECTION!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with onnxruntime and pandas only; skipped when pip cannot reach a registry."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    wanted = [f"{name}=={version(name)}" for name in ("onnxruntime", "pandas", "numpy")]
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        pytest.skip(f"pip could not install {wanted}: {install.stderr.strip()[-300:]}")
    return python


def test_readme_snippet_scores_a_raw_csv_without_autocompress(
    bare_python: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path, tiny_study_dict(tmp_path, n_trials=2))
    result = run_study(study, progress=False)
    export = result.export(tmp_path / "runs" / "exports" / "german_credit", policy="fastest")
    task = build_task(result.loaded.config)
    rows = task.splits["test"][0].copy()
    rows.iloc[0, 0] = None  # an empty cell
    categorical = next(iter(task.preprocessor.categories))
    rows.loc[rows.index[1], categorical] = "a category never seen"
    numeric = task.preprocessor.numeric[0]
    rows[numeric] = rows[numeric].astype(object)
    rows.loc[rows.index[2], numeric] = " 12 "  # a number written as text
    rows.to_csv(tmp_path / "applicants.csv", index=False)

    bare_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run(
        [str(bare_python), "-c", readme_snippet() + "\nnp.save('out.npy', probabilities)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=bare_env,
    )
    assert check.returncode == 0, check.stderr
    no_autocompress = subprocess.run(
        [str(bare_python), "-c", "import autocompress"],
        cwd=tmp_path,  # where the snippet ran (the repository's folder would be on the path)
        capture_output=True,
        text=True,
        env=bare_env,  # a PYTHONPATH set for a development checkout is not the venv's
    )
    assert no_autocompress.returncode != 0, "the bare venv must not see autocompress"

    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, task.preprocessor.raw_feeds(rows))[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)
