"""A new selection policy is one file plus one registration line, and takes part end to
end: the study file and `--policy` accept it (a bad value gets the usual message), the
export records it, and the nightly decides with it. Real `autocompress` processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.conftest import tiny_study_dict, write_study

# The one new file: a policy that trades accuracy for speed by their ratio.
POLICY_FILE = '''
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from autocompress.policies.base import Decision, Policy, require_front


@dataclass(frozen=True)
class AccuracyPerMs(Policy):
    """Highest validation accuracy per millisecond of p50; nightly, the challenger's
    ratio at its slowest round must beat the champion's at its fastest."""

    usage: ClassVar[str] = "accuracy_per_ms"

    @classmethod
    def parse(cls, text):
        return cls(text) if text == cls.usage else None

    def ranked(self, candidates):
        return sorted(
            require_front(candidates),
            key=lambda m: -m.metrics["accuracy"] / m.metrics["latency_p50_ms"],
        )

    def beats(self, duel):
        new = duel.challenger.metrics["accuracy"] / max(duel.challenger.p50_rounds)
        old = duel.champion.metrics["accuracy"] / min(duel.champion.p50_rounds)
        return Decision(new > old, f"accuracy per ms {new:.3f} vs champion {old:.3f}")
'''
# The one registration line, as it would stand in autocompress/policies/__init__.py.
LAUNCHER = """
import autocompress.policies
from accuracy_per_ms import AccuracyPerMs
autocompress.policies.POLICIES.append(AccuracyPerMs)

from autocompress.cli import main
main()
"""


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(folder / "launch.py"), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_new_policy_is_one_file_and_one_line(tmp_path: Path) -> None:
    (tmp_path / "accuracy_per_ms.py").write_text(POLICY_FILE)
    (tmp_path / "launch.py").write_text(textwrap.dedent(LAUNCHER))
    export = {"dir": str(tmp_path / "exports"), "seeds": 1, "policy": "accuracy_per_ms"}
    study = tiny_study_dict(tmp_path, n_trials=3, export=export)
    path = write_study(tmp_path, study)

    typo = run(tmp_path, "export", str(path), "--out", "x", "--policy", "accuracy_per_sec")
    assert typo.returncode == 2, typo.stderr
    assert "'accuracy_per_sec' is not allowed" in typo.stderr
    assert "accuracy_per_ms" in typo.stderr  # listed among the allowed values
    assert not (tmp_path / "x").exists() and not (tmp_path / "study.db").exists()

    # The study file's export.policy is the new one: run, export and nightly accept it.
    ran = run(tmp_path, "run", str(path))
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "chosen"
    exported = run(tmp_path, "export", str(path), "--out", str(out), "--policy", "accuracy_per_ms")
    assert exported.returncode == 0, exported.stderr
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["study"]["policy"] == "accuracy_per_ms"

    first = run(tmp_path, "nightly", str(path), "--n-trials", "1")
    assert first.returncode == 0, first.stderr
    second = run(tmp_path, "nightly", str(path), "--n-trials", "1")
    assert second.returncode == 0, second.stderr
    reports = sorted((tmp_path / "reports").glob("tiny.nightly.*/report.html"))
    assert reports and "accuracy per ms" in reports[-1].read_text()
