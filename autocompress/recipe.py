"""The full compression configuration of one trial.

A `Recipe` is plain data made from a trial's params. It is written as
`config.yaml` in every export, and is enough (with the teacher) to rebuild the
same model.

What a search space may name is declared by the passes that act on it: each
registered pass (`autocompress.passes.TORCH_PASSES`, then `ONNX_PASSES`) lists its
fields (`Pass.fields`: name -> `FieldSpec`, with the default) and words what it does
to a recipe (`Pass.describe`, `Pass.step`). `RECIPE_FIELDS` is those fields in
registration order, followed by the recipe-level `INPUT_FIELDS`, which no pass acts
on (the task reads them); it is read from the registries when asked, so a pass
registered after this module was imported is in it.

The fields of the passes shipped with autocompress are stored as the dataclass's own
attributes (their order is that of `to_dict` and of every export's `config.yaml`);
a field another pass declares is kept in `extras`, read as an attribute all the
same (`recipe.noise_std`) and flattened by `to_dict`/`from_dict`. This module imports
no pass at import time (passes import `FieldSpec` from here), and nothing heavy:
reading a study file needs no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from autocompress.passes.base import Pass

logger = logging.getLogger("autocompress")
# For the columns a credit study lists in `task.preprocessing.searched_columns`:
# `declared` keeps the study's own transform; any other replaces it (see config.py).
NUMERIC_TRANSFORMS = ("declared", "none", "log1p", "signed_log1p", "clip", "quantile")


@dataclass(frozen=True)
class Recipe:
    """One point of the search space; defaults are the identity (the teacher itself).

    The attributes are the fields of the shipped passes, with the defaults those passes
    declare (tests/test_extension_points.py holds the two equal); `extras` holds the
    values given for fields that other registered passes declare."""

    pruning_ratio: float = 0.0
    ffn_pruning_ratio: float | None = None
    pruning_importance: str = "l2"
    finetune_epochs: int = 0
    kd_temperature: float = 1.0
    kd_alpha: float = 0.0
    hidden_distill_weight: float = 0.0
    augment_word_prob: float = 0.0
    bits: int = 32
    int8_mode: str = "dynamic"
    per_channel: bool = False
    int4_block_size: int = 32
    layer_keep_ratio: float = 1.0
    bnb_4bit_type: str = "nf4"
    numeric_transform: str = "declared"
    extras: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        if clash := sorted(set(STORED_FIELDS) & set(self.extras)):
            raise ValueError(f"{clash} are stored fields of a Recipe, not extras")
        object.__setattr__(self, "extras", dict(self.extras))  # a copy: recipes are values

    def __getattr__(self, name: str) -> Any:
        """A field another registered pass declares: its value here, else its default."""
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        spec = None if name.startswith("_") else recipe_fields().get(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return spec.default

    def to_dict(self) -> dict[str, Any]:
        """Every stored field, then the extras given: what `config.yaml` records."""
        return {**{name: getattr(self, name) for name in STORED_FIELDS}, **self.extras}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Recipe:
        """The recipe `values` describe; names no registered pass declares are left out,
        with a warning (this process cannot apply them: its pass is not registered)."""
        declared = recipe_fields()
        if unknown := [k for k in values if k not in STORED_FIELDS and k not in declared]:
            logger.warning("recipe fields %s: no registered pass declares them; left out", unknown)
        return cls(
            **{k: v for k, v in values.items() if k in STORED_FIELDS},
            extras={k: v for k, v in values.items() if k not in STORED_FIELDS and k in declared},
        )

    @property
    def describe(self) -> str:
        """A one-line summary of what the pass chain does, for tables and notes: the
        inputs, then each registered pass's `describe`, in order."""
        inputs = "" if self.numeric_transform == "declared" else f"{self.numeric_transform} inputs"
        parts = [inputs, *(each.describe(self) for each in registered_passes())]
        return ", ".join(part for part in parts if part)

    @property
    def prunes(self) -> bool:
        """Whether structured pruning removes anything (all widths, or the FFN alone)."""
        return self.pruning_ratio > 0 or (self.ffn_pruning_ratio or 0.0) > 0

    @property
    def distils(self) -> bool:
        """Whether fine-tuning learns from the teacher (soft targets, states or altered rows)."""
        return self.kd_alpha > 0 or self.hidden_distill_weight > 0 or self.augment_word_prob > 0

    @property
    def precision(self) -> str:
        """The bit-width in a few words, e.g. `int8 static per-ch`."""
        if self.bits == 8:
            return f"int8 {self.int8_mode}{' per-ch' if self.per_channel else ''}"
        return {32: "fp32", 16: "fp16", 4: f"int4 w/o b{self.int4_block_size}"}[self.bits]

    def pass_chain(self, pruned_units: str | None = None) -> list[str]:
        """What each pass does to the teacher, in order, for notes and reports.

        `pruned_units` is what structured pruning removes in the model at hand, as its
        task words it (an MLP: "hidden units"); without it, the step says what it
        removes in each kind of model."""
        steps = []
        if self.numeric_transform != "declared":
            steps.append(
                f"inputs: {self.numeric_transform} for the searched numeric columns, from a "
                "teacher trained on those inputs"
            )
        steps += [each.step(self, pruned_units) for each in registered_passes()]
        return [step for step in steps if step]


STORED_FIELDS = tuple(f.name for f in fields(Recipe) if f.name != "extras")
"""The fields a `Recipe` stores as attributes, in `to_dict` order."""


class Need(NamedTuple):
    """What a recipe field needs to act on, offered or not by a task kind (the `offers` of
    its settings class; see `autocompress.tasks`). `capability` is the name of the model
    protocol in `autocompress.models.capabilities` when the student provides it, else what
    the task's data can do; `words` say it in a refusal ("needs <words> (<capability>)")."""

    capability: str
    words: str


@dataclass(frozen=True)
class FieldSpec:
    """What a search space may say about one recipe field, and its value when it says
    nothing (`default`)."""

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    active: Callable[[Mapping[str, Any]], bool] = lambda params: True
    needs: tuple[Need, ...] = ()  # what the task kind must offer; (): nothing
    runtimes: tuple[str, ...] | None = None  # None: every registered target runtime
    note: str = ""
    default: Any = None


# Recipe-level fields: no pass acts on them. The task does (`Task.for_recipe`: which
# preprocessing, hence which teacher), before any pass runs.
INPUT_FIELDS: dict[str, FieldSpec] = {
    "numeric_transform": FieldSpec(
        str,
        choices=NUMERIC_TRANSFORMS,
        needs=(Need("NumericTransforms", "numeric input columns whose transform is searched"),),
        note="transform of the columns in task.preprocessing.searched_columns; `declared` "
        "keeps the study's; another trains (once, then cached) a teacher on those inputs, "
        "and the student starts from it",
        default="declared",
    ),
}


def registered_passes() -> list[Pass]:
    """The torch passes, then the ONNX passes, as registered now."""
    from autocompress.passes import ONNX_PASSES, TORCH_PASSES  # light; they import this module

    return [*TORCH_PASSES, *ONNX_PASSES]


def recipe_fields() -> dict[str, FieldSpec]:
    """Every field a search space may name: the registered passes' fields in order, then
    `INPUT_FIELDS`. Two declarations of one name, or a name a `Recipe` already uses for
    something else, are refused (`ValueError`)."""
    declared: dict[str, FieldSpec] = {}
    owners: dict[str, str] = {}
    declarations = [(each.name, each.fields) for each in registered_passes()]
    for owner, specs in [*declarations, ("recipe", INPUT_FIELDS)]:
        for name, spec in specs.items():
            if name in declared:
                raise ValueError(f"{owner!r} declares the field {name!r}, as {owners[name]!r} does")
            if name == "extras" or (name not in STORED_FIELDS and hasattr(Recipe, name)):
                raise ValueError(f"{owner!r} declares {name!r}, which a Recipe already has")
            declared[name], owners[name] = spec, owner
    return declared


class _RegisteredFields(Mapping[str, FieldSpec]):
    """`recipe_fields()` as a mapping, read anew at each use."""

    def __getitem__(self, name: str) -> FieldSpec:
        return recipe_fields()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(recipe_fields())

    def __len__(self) -> int:
        return len(recipe_fields())


RECIPE_FIELDS: Mapping[str, FieldSpec] = _RegisteredFields()
"""The single description of what a search space may name (see the module docstring)."""


def define_by_run(
    space: Mapping[str, Any], choose: Callable[[str, Any], Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Walk a search space (field name -> `config.ParamSpace`) as a sampler asks it: in
    `RECIPE_FIELDS` order, a field inactive given the values so far is skipped, a fixed
    one takes its value, any other `choose(name, param)`. Returns every value, and the
    chosen ones (a trial's params)."""
    values: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for name, spec in RECIPE_FIELDS.items():
        param = space.get(name)
        if param is None or not spec.active(values):
            continue
        if param.is_fixed:
            values[name] = param.fixed
        else:
            values[name] = chosen[name] = choose(name, param)
    return values, chosen
