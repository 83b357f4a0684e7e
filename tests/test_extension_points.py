"""A new torch pass and a new ONNX pass are each one file plus one registration line,
and a new target its settings and its target plus one line; they take part end to end:
study files accept the new fields (a bad value gets the usual message) and the new
runtime with its settings, the passes run in the chain, the trial notes describe them,
and the export records their fields. A new task kind is its settings and its task plus
one line, and study files of that kind are read and checked against what it offers.
Real `autocompress` processes, as `tests/test_new_policy.py` runs them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from autocompress.passes import ONNX_PASSES, TORCH_PASSES, TorchPass
from autocompress.recipe import RECIPE_FIELDS, STORED_FIELDS, FieldSpec, Recipe
from tests.conftest import note_md, tiny_study_dict, write_study
from tests.test_new_policy import run  # the launcher in a real process

# New file 1: a torch pass. Light at import (torch inside `apply`), as every pass is:
# `autocompress front` reads its fields without torch.
TORCH_PASS_FILE = '''
from __future__ import annotations

from pathlib import Path

from autocompress.passes.base import TorchPass
from autocompress.recipe import FieldSpec


class WeightNoise(TorchPass):
    """Adds seeded Gaussian noise of `recipe.noise_std` to every Linear weight."""

    name = "weight_noise"
    fields = {
        "noise_std": FieldSpec(
            float, 0.0, 0.1, note="std of the noise added to Linear weights", default=0.0
        ),
    }

    def describe(self, recipe):
        return f"noise {recipe.noise_std:.2g}" if recipe.noise_std > 0 else ""

    def apply(self, model, recipe, ctx):
        if recipe.noise_std <= 0:
            return model
        import torch

        generator = torch.Generator().manual_seed(ctx.seed)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear):
                    noise = torch.randn(module.weight.shape, generator=generator)
                    module.weight.add_(noise * recipe.noise_std)
        with Path("applied.log").open("a") as log:
            log.write(f"{self.name} {recipe.noise_std}\\n")
        return model
'''
# New file 2: an ONNX pass, run by the onnxruntime target after the precision pass.
ONNX_PASS_FILE = '''
from __future__ import annotations

import shutil
from pathlib import Path

from autocompress.passes.base import OnnxPass
from autocompress.recipe import FieldSpec


class StripDocstrings(OnnxPass):
    """Removes the graph's and its nodes' doc strings; a copy when the recipe says no."""

    name = "strip_docstrings"
    fields = {"strip_docstrings": FieldSpec(bool, choices=(True, False), default=False)}

    def describe(self, recipe):
        return "docstrings stripped" if recipe.strip_docstrings else ""

    def apply(self, source, destination, recipe, calibration):
        if not recipe.strip_docstrings:
            shutil.copyfile(source, destination)
            return
        import onnx

        model = onnx.load(source)
        model.doc_string = model.graph.doc_string = ""
        for node in model.graph.node:
            node.doc_string = ""
        onnx.save(model, destination)
        with Path("applied.log").open("a") as log:
            log.write(f"{self.name} {len(model.graph.node)} nodes\\n")
'''
# New files 3 and 4: a target, onnxruntime with two intra-op threads, and its settings
# (the study file's `target:` section for its runtime; light: pydantic only).
TARGET_FILE = '''
from __future__ import annotations

from autocompress.targets.onnxruntime import OnnxRuntimeTarget


class TwoThreads(OnnxRuntimeTarget):
    """onnxruntime, whatever the study says, with two intra-op threads."""

    def __init__(self, config, where=lambda key: key):
        super().__init__(config.model_copy(update={"intra_op_threads": 2}), where)
'''
TARGET_CONFIG_FILE = """
from typing import Literal

from autocompress.targets.onnxruntime_config import OnnxRuntimeTargetConfig


class TwoThreadsConfig(OnnxRuntimeTargetConfig):
    runtime: Literal["onnxruntime-2threads"] = "onnxruntime-2threads"
"""
# One registration line each, as they would stand in autocompress/passes/__init__.py
# and autocompress/targets/__init__.py; then the real CLI.
LAUNCHER = """
import autocompress.passes
from autocompress.targets import TARGETS, TargetEntry
from weight_noise import WeightNoise
from onnx_strip_docstrings import StripDocstrings
autocompress.passes.TORCH_PASSES.append(WeightNoise())
autocompress.passes.ONNX_PASSES.append(StripDocstrings())
TARGETS["onnxruntime-2threads"] = TargetEntry(
    "two_threads:TwoThreads", "two_threads_config:TwoThreadsConfig"
)

from autocompress.cli import main
main()
"""
SPACE = {
    "pruning_ratio": {"choices": [0.0, 0.5]},
    "noise_std": {"low": 0.01, "high": 0.05},
    "strip_docstrings": True,
    "bits": {"choices": [32]},
}


def study_file(folder: Path, **space: object) -> Path:
    study = tiny_study_dict(folder, search_space={**SPACE, **space}, n_trials=3)
    study["task"] |= {"teacher": {"hidden_sizes": [16], "epochs": 2, "patience": 1}}
    study["target"] |= {"runtime": "onnxruntime-2threads"}
    return write_study(folder, study)


def test_a_new_pass_or_target_is_one_file_and_one_line(tmp_path: Path) -> None:
    (tmp_path / "weight_noise.py").write_text(TORCH_PASS_FILE)
    (tmp_path / "onnx_strip_docstrings.py").write_text(ONNX_PASS_FILE)
    (tmp_path / "two_threads.py").write_text(TARGET_FILE)
    (tmp_path / "two_threads_config.py").write_text(TARGET_CONFIG_FILE)
    (tmp_path / "launch.py").write_text(textwrap.dedent(LAUNCHER))

    # A value outside the new field's range: the usual message, before anything runs.
    bad = study_file(tmp_path, noise_std={"low": 0, "high": 5})
    refused = run(tmp_path, "run", str(bad))
    assert refused.returncode == 2, refused.stderr
    assert f"{bad}: search_space.noise_std.high: 5 is outside the allowed range [0.0, 0.1]" in (
        refused.stderr
    )
    assert not (tmp_path / "study.db").exists()

    path = study_file(tmp_path)
    ran = run(tmp_path, "run", str(path))
    assert ran.returncode == 0, ran.stderr
    applied = (tmp_path / "applied.log").read_text().splitlines()
    assert any(line.startswith("weight_noise 0.0") for line in applied), applied
    assert any(line.startswith("strip_docstrings ") for line in applied), applied

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    students = [
        t
        for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
        if "noise_std" in t.params
    ]
    assert students, [t.user_attrs for t in study.trials]
    for trial in students:
        noise = trial.params["noise_std"]
        assert trial.user_attrs["recipe"]["noise_std"] == noise
        assert trial.user_attrs["recipe"]["strip_docstrings"] is True
        fragment = f"noise {noise:.2g}"
        assert trial.user_attrs["recipe_summary"].endswith(f"{fragment}, fp32, docstrings stripped")
        body = note_md(tmp_path / "artifacts", trial)
        assert fragment in body and "weight noise: " + fragment in body, body
        assert "strip docstrings: docstrings stripped" in body, body
        assert trial.user_attrs["measurement"]["threads"] == 2

    chosen = students[0]
    out = tmp_path / "chosen"
    exported = run(
        tmp_path, "export", str(path), "--out", str(out), "--policy", f"trial:{chosen.number}"
    )
    assert exported.returncode == 0, exported.stderr
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["recipe"]["noise_std"] == chosen.params["noise_std"]
    assert recorded["recipe"]["strip_docstrings"] is True
    assert list(recorded["recipe"])[: len(STORED_FIELDS)] == list(STORED_FIELDS)
    assert recorded["target"]["runtime"] == "onnxruntime-2threads"


def test_the_recipe_defaults_are_the_passes_defaults() -> None:
    """A `Recipe` stores the shipped passes' fields as attributes, with their defaults."""
    assert set(STORED_FIELDS) == set(RECIPE_FIELDS)
    for name in STORED_FIELDS:
        assert getattr(Recipe(), name) == RECIPE_FIELDS[name].default, name


class _Noise(TorchPass):
    name = "noise"
    fields = {"noise_std": FieldSpec(float, 0.0, 0.1, default=0.0)}

    def describe(self, recipe: Recipe) -> str:
        return f"noise {recipe.noise_std:.2g}" if recipe.noise_std > 0 else ""


def test_a_registered_pass_fields_are_read_stored_and_described() -> None:
    TORCH_PASSES.append(_Noise())
    try:
        names = list(RECIPE_FIELDS)  # the torch passes' fields, then the ONNX passes'
        assert names.index("noise_std") == names.index("augment_word_prob") + 1
        assert names[names.index("noise_std") + 1] == next(iter(ONNX_PASSES[0].fields))
        recipe = Recipe.from_dict({"pruning_ratio": 0.5, "noise_std": 0.02, "unknown": 1})
        assert recipe.noise_std == 0.02 and Recipe().noise_std == 0.0
        assert recipe.to_dict() == {**Recipe(pruning_ratio=0.5).to_dict(), "noise_std": 0.02}
        assert Recipe.from_dict(recipe.to_dict()) == recipe != Recipe(pruning_ratio=0.5)
        assert recipe.describe == "prune 50% (l2), noise 0.02, fp32"
        assert "noise: noise 0.02" in recipe.pass_chain()
        TORCH_PASSES.append(_Noise())
        with pytest.raises(ValueError, match="'noise' declares the field 'noise_std'"):
            list(RECIPE_FIELDS)
    finally:
        while isinstance(TORCH_PASSES[-1], _Noise):
            TORCH_PASSES.pop()
    assert "noise_std" not in RECIPE_FIELDS


# A new task kind: its settings (a light pydantic model with its `kind`) and its task,
# here the credit ones under a kind of their own whose students offer only pruning; one
# registration line, before `autocompress.config` is imported.
TASK_FILES = {
    "applicants_config.py": """
from typing import ClassVar, Literal

from autocompress.tasks.credit_config import CreditTaskConfig


class ApplicantsConfig(CreditTaskConfig):
    kind: Literal["applicants"]
    offers: ClassVar[frozenset[str]] = frozenset({"Prunable"})
""",
    "applicants.py": """
from autocompress.tasks.credit import CreditTask


class ApplicantsTask(CreditTask):
    cache_prefix = "applicants"
""",
    "launch.py": """
import sys

from autocompress.tasks import TASKS, TaskEntry
TASKS["applicants"] = TaskEntry("applicants:ApplicantsTask", "applicants_config:ApplicantsConfig")

from autocompress.config import load_study_config
from autocompress.errors import UserError
from autocompress.tasks import build_task

try:
    loaded = load_study_config(sys.argv[1])
except UserError as error:
    sys.exit(str(error))
print(type(loaded.config.task).__name__, type(build_task(loaded.config)).__name__)
""",
}


def test_a_new_task_kind_is_its_settings_its_task_and_one_line(tmp_path: Path) -> None:
    for name, text in TASK_FILES.items():
        (tmp_path / name).write_text(text)
    study = tiny_study_dict(tmp_path)
    study["task"]["kind"] = "applicants"
    checked = run(tmp_path, str(write_study(tmp_path, study)))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.split() == ["ApplicantsConfig", "ApplicantsTask"]

    study["search_space"] = {**study["search_space"], "numeric_transform": "quantile"}
    refused = run(tmp_path, str(write_study(tmp_path, study)))
    assert "numeric_transform: needs numeric input columns whose transform is searched " in (
        refused.stderr
    )
    assert "which task kind 'applicants' does not offer" in refused.stderr

    study["task"]["kind"] = "applicant"
    refused = run(tmp_path, str(write_study(tmp_path, study)))
    allowed = "allowed values: 'credit', 'text', 'applicants'"
    assert f"task.kind: 'applicant' is not allowed; {allowed}" in refused.stderr, refused.stderr
