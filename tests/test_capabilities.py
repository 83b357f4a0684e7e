"""What a task kind offers to recipe fields is what its students can do (issue 15).

Each task kind's settings list what it offers (`offers`); each recipe field names what it
needs (`FieldSpec.needs`). A model capability is named as its protocol in
`autocompress.models.capabilities`, and the task's model family must implement it; a
field needing what the study's task kind lacks is refused when the study file is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autocompress.config import TASK_CONFIGS, load_study_config
from autocompress.errors import UserError
from autocompress.models import capabilities
from autocompress.recipe import RECIPE_FIELDS
from autocompress.tasks import TASKS, task_class
from tests.conftest import tiny_study_dict, write_study
from tests.text_fixtures import tiny_text_study


def _protocols() -> dict[str, type]:
    return {
        name: value
        for name, value in vars(capabilities).items()
        if getattr(value, "_is_runtime_protocol", False)
    }


@pytest.mark.parametrize("kind", list(TASKS))
def test_a_task_kind_offers_only_what_its_models_implement(kind: str) -> None:
    model_class = task_class(kind).model_class
    offered = TASK_CONFIGS[kind].offers
    claimed = [protocol for name, protocol in _protocols().items() if name in offered]
    assert claimed, f"{kind} offers no model capability: {sorted(offered)}"
    for protocol in claimed:
        assert issubclass(model_class, protocol), f"{model_class.__name__}: {protocol.__name__}"


def test_every_need_is_offered_by_some_task_kind() -> None:
    offered = set().union(*(config.offers for config in TASK_CONFIGS.values()))
    for name, spec in RECIPE_FIELDS.items():
        for need in spec.needs:
            assert need.capability in offered, (name, need)


def test_a_field_the_task_kind_cannot_use_is_refused_naming_the_capability(
    tmp_path: Path,
) -> None:
    study = tiny_study_dict(tmp_path)
    study["search_space"] = {**study["search_space"], "layer_keep_ratio": {"low": 0.5, "high": 1}}
    path = write_study(tmp_path, study)
    with pytest.raises(UserError) as refused:
        load_study_config(path)
    assert str(refused.value) == (
        f"{path}: search_space.layer_keep_ratio: needs a model with layers to drop (Layered), "
        "which task kind 'credit' does not offer; remove it from the search space"
    )

    text = tiny_text_study(tmp_path, tmp_path / "model", tmp_path / "rows.csv")
    text["search_space"] = {**text["search_space"], "numeric_transform": "quantile"}
    path = write_study(tmp_path, text, "text.yaml")
    with pytest.raises(UserError, match=r"numeric_transform: needs .*\(NumericTransforms\), "):
        load_study_config(path)
