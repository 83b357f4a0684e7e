"""notebooks/quickstart.ipynb runs top to bottom, in this interpreter, writing nothing into
the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import install as install_kernelspec
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell

from autocompress import verify
from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
TIMEOUT_S = 300  # per cell; the study cell takes well under a minute on 2 cores
WHICH_PYTHON = "import sys; print(sys.executable)"
# Written by the interpreter and by test tools, not by the notebook (its kernel runs with
# PYTHONDONTWRITEBYTECODE). New Python sources are ignored too: the notebook writes
# databases, models, exports and reports, never code, and people edit the checkout while
# tests run.
TOOL_CACHES = ("__pycache__/", ".pytest_cache/", ".ruff_cache/")


def test_committed_notebook_is_stored_executed() -> None:
    """A reader who opens the notebook sees results: every code cell was run, in order,
    and the table and the plot are there (`jupyter execute --inplace` refreshes them)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any('class="dataframe"' in o.get("data", {}).get("text/html", "") for o in outputs)


def test_quickstart_runs_and_leaves_the_repository_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _repository_files()
    executed = _execute(NOTEBOOK, tmp_path, monkeypatch)
    outputs = [output for cell in executed.cells[:-1] for output in cell.get("outputs", [])]

    assert _printed(executed.cells[-1]).strip() == sys.executable, "run by this interpreter"
    table = next(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    assert 'class="dataframe"' in table and "p50 ms" in table and "teacher" in table
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot is shown inline"
    printed = "".join(_printed(cell) for cell in executed.cells)
    export = Path(re.search(r"^export:\s+(\S+)$", printed, re.MULTILINE).group(1))
    assert export.is_relative_to(tmp_path) and verify(export) == 4
    written = _repository_files() - before
    assert not written, f"the notebook wrote into the repository: {sorted(written)}"


def _execute(path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run a copy of the notebook, plus one cell that reports the kernel's interpreter,
    with its working directory and temporary files under `workdir`."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_code_cell(WHICH_PYTHON))
    _use_kernel_of_this_interpreter(workdir / "jupyter", monkeypatch)
    monkeypatch.setenv("TMPDIR", str(workdir))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # no __pycache__ from the kernel
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        return client.execute()
    except CellExecutionError as error:
        pytest.fail(f"a notebook cell failed:\n{error}")


def _use_kernel_of_this_interpreter(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `python3` kernelspec whose argv is this `sys.executable`, first on JUPYTER_PATH."""
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    install_kernelspec(kernel_name="python3", prefix=str(prefix))


def _printed(cell: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def _repository_files() -> set[str]:
    """Paths git lists as untracked or ignored (runs/, *.db, exports), tool caches aside."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout; cannot check that the repository stays clean")
    listing = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        line[3:]
        for line in listing.stdout.splitlines()
        if line[:2] in ("??", "!!")
        and not any(cache in line for cache in TOOL_CACHES)
        and not line.endswith(".py")
    }
