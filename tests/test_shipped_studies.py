"""Every study file we ship validates, with its warm-start recipes inside its space."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocompress.config import load_study_config
from tests.conftest import REPO

STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def test_studies_are_shipped() -> None:
    assert {p.name for p in STUDIES} >= {"german_credit.yaml", "fin_sentiment_minilm.yaml"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_shipped_study_validates(path: Path) -> None:
    loaded = load_study_config(path)
    assert loaded.config.study_name == path.stem
    assert loaded.space, "a study without a search space searches nothing"
