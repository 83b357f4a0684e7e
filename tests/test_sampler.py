"""The study's sampler: `sampler.n_startup_trials`, TPE's random trials before it models.

The behavioural tests run a plain two-parameter objective (no training): milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from autocompress import UserError, load_study_config
from autocompress.config import SamplerConfig
from autocompress.search import build_sampler
from tests.conftest import REPO, tiny_study_dict, write_study

OPTUNA_DEFAULT_STARTUP = 10


def _params(config: SamplerConfig, n_trials: int, queued: int = 0) -> list[dict[str, float]]:
    """The params each trial of a toy study got, `queued` fixed trials first (warm starts)."""
    study = optuna.create_study(sampler=build_sampler(config))
    for index in range(queued):
        study.enqueue_trial({"x": index / 10, "y": -index / 10})
    study.optimize(
        lambda trial: trial.suggest_float("x", -1, 1) ** 2 + trial.suggest_float("y", -1, 1) ** 2,
        n_trials=n_trials,
    )
    return [trial.params for trial in study.trials]


def _same_as_random(config: SamplerConfig, n_trials: int, queued: int = 0) -> list[bool]:
    """Per trial: did it get what the random sampler with the same seed draws?"""
    drawn = _params(config, n_trials, queued)
    random = _params(SamplerConfig(name="random", seed=config.seed), n_trials, queued)
    return [mine == theirs for mine, theirs in zip(drawn, random, strict=True)]


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("start", [0, 3])
def test_build_sampler_passes_n_startup_trials_to_tpe(start: int) -> None:
    sampler = build_sampler(SamplerConfig(n_startup_trials=4), start=start)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 4


def test_no_n_startup_trials_leaves_optunas_default() -> None:
    assert SamplerConfig().n_startup_trials is None
    sampler = build_sampler(SamplerConfig())
    assert sampler._n_startup_trials == OPTUNA_DEFAULT_STARTUP


def test_tpe_stops_sampling_at_random_after_n_startup_trials() -> None:
    assert _same_as_random(SamplerConfig(seed=3, n_startup_trials=2), 3) == [True, True, False]
    default = _same_as_random(SamplerConfig(seed=3), OPTUNA_DEFAULT_STARTUP + 1)
    assert default == [True] * OPTUNA_DEFAULT_STARTUP + [False]


def test_queued_trials_count_among_the_startup_trials() -> None:
    """As in Optuna, every finished trial counts: warm starts (and the teacher) too."""
    assert _same_as_random(SamplerConfig(n_startup_trials=2), 3, queued=2)[2:] == [False]
    assert _same_as_random(SamplerConfig(n_startup_trials=3), 4, queued=2)[2:] == [True, False]


def test_the_text_study_models_early_and_the_credit_studies_keep_the_default() -> None:
    loaded = load_study_config(REPO / "studies" / "fin_sentiment_minilm.yaml")
    assert loaded.config.sampler.n_startup_trials == 4
    assert build_sampler(loaded.config.sampler)._n_startup_trials == 4
    for name in ("german_credit.yaml", "taiwan_credit.yaml"):
        assert load_study_config(REPO / "studies" / name).config.sampler.n_startup_trials is None


def _study_with_sampler(folder: Path, **sampler: object) -> Path:
    return write_study(folder, tiny_study_dict(folder, sampler={"seed": 7, **sampler}))


@pytest.mark.parametrize("name", ["nsga2", "random"])
def test_n_startup_trials_with_another_sampler_is_refused(tmp_path: Path, name: str) -> None:
    path = _study_with_sampler(tmp_path, name=name, n_startup_trials=4)
    with pytest.raises(UserError) as error:
        load_study_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: sampler: ")
    assert "n_startup_trials (how many trials TPE draws at random" in message
    assert f"applies to name: tpe only, not {name}; remove it or use name: tpe" in message


@pytest.mark.parametrize("value", [0, -1])
def test_n_startup_trials_below_one_is_refused(tmp_path: Path, value: int) -> None:
    path = _study_with_sampler(tmp_path, name="tpe", n_startup_trials=value)
    with pytest.raises(UserError) as error:
        load_study_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: sampler.n_startup_trials: ")
    assert "greater than or equal to 1" in message and f"(got {value})" in message


def test_n_startup_trials_null_is_the_default_for_every_sampler(tmp_path: Path) -> None:
    path = _study_with_sampler(tmp_path, name="nsga2", n_startup_trials=None)
    assert load_study_config(path).config.sampler.n_startup_trials is None
