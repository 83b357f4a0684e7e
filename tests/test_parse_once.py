"""The study file is read once: the API and the nightly take the study as read, and
nothing reads the file (or its search space) again."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autocompress.api import load_result, run_study, stored_front
from autocompress.config import as_loaded, load_study_config
from autocompress.nightly import run_nightly
from tests.conftest import TINY_SPACE, tiny_study_dict, write_study


def test_a_study_read_once_runs_exports_and_runs_nightly_without_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    path = write_study(tmp_path, tiny_study_dict(tmp_path, n_trials=2, search_space=str(space)))
    loaded = load_study_config(path, sampler_seed=3)
    path.unlink()
    space.unlink()  # a module that reads either again fails now

    result = run_study(loaded, progress=False)
    assert len(result.study.trials) == 2
    assert result.loaded.config.sampler.seed == 3  # the override it was read with
    assert load_result(loaded).export(tmp_path / "out").is_dir()
    assert stored_front(loaded).members

    outcome = run_nightly(loaded, n_trials=1, rounds=3, progress=False)
    assert outcome.decision.replace and outcome.study_name.startswith("tiny.nightly.")
    assert load_result(loaded, study_name=outcome.study_name).study.trials


def test_a_study_read_already_takes_only_overrides_that_name_no_file(tmp_path: Path) -> None:
    loaded = load_study_config(write_study(tmp_path, tiny_study_dict(tmp_path)))
    renamed = as_loaded(loaded, study_name="other", n_trials=9, sampler_seed=5)
    assert (renamed.config.study_name, renamed.config.n_trials) == ("other", 9)
    assert renamed.config.sampler.seed == 5 and loaded.config.study_name == "tiny"
    assert renamed.config.is_overridden("study_name") and not loaded.config.is_overridden(
        "study_name"
    )
    assert as_loaded(loaded) is loaded
    with pytest.raises(TypeError, match="resolved when the study file is read"):
        as_loaded(loaded, data=tmp_path / "other.csv")
