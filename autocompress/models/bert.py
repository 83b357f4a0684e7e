"""BERT-family sequence classifiers: a thin wrapper plus the structural surgery.

`BertConfig` holds one `num_attention_heads`, one `intermediate_size` and one
`hidden_size` for every layer, so a pruned model reloads with plain
`AutoModelForSequenceClassification.from_pretrained` (no custom code, no pickle)
only if pruning is uniform across layers and the config is rewritten to the new
shapes. Everything here exists to keep that true, and to refuse (`Unsupported`)
rather than write a model that would not reload.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from autocompress.errors import Unsupported

KEPT_LAYERS_KEY = "autocompress_kept_layers"
"""`hf.config` attribute: original layer indices kept by `drop_layers` (saved in config.json)."""


class TextClassifier(nn.Module):
    """A Hugging Face sequence classifier whose forward takes tensors and returns logits.

    Positional tensors in, one tensor out: that is what torch-pruning's tracer, our
    training loop (`model(*inputs)`) and `torch.onnx.export` can all call.
    """

    def __init__(self, hf: PreTrainedModel) -> None:
        super().__init__()
        self.hf = hf

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        input_ids, attention_mask, token_type_ids = _trim_padding(
            input_ids, attention_mask, token_type_ids
        )
        return self.hf(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        ).logits

    def forward_with_hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden states (embedding output, then each layer's output) of one
        pass, so hidden-state distillation costs no second forward of the student."""
        input_ids, attention_mask, token_type_ids = _trim_padding(
            input_ids, attention_mask, token_type_ids
        )
        output = self.hf(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
            return_dict=True,
        )
        return output.logits, list(output.hidden_states)

    @property
    def spec(self) -> dict[str, Any]:
        """The shape as it is now, read from the modules (the truth after pruning).

        Raises `Unsupported` if the layers disagree with each other or with
        `hf.config`, since such a model would not reload from its config.
        """
        shape = _live_shape(self)
        config = self.hf.config
        for key, value in shape.items():
            if getattr(config, key) != value:
                raise Unsupported(
                    f"model config says {key}={getattr(config, key)} but the layers have {value}"
                )
        return {"family": "bert", **shape}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, folder: str | Path) -> None:
        """Hugging Face layout (config.json + model.safetensors); reloads without autocompress."""
        self.spec  # noqa: B018 - refuse to write a config that disagrees with the weights
        self.hf.save_pretrained(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs: Any) -> TextClassifier:
        hf = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
        return cls(hf).eval()

    @classmethod
    def from_hf(cls, model: PreTrainedModel) -> TextClassifier:
        return cls(model)

    # -- capabilities (`autocompress.models.capabilities`) ------------------------------
    def protected_layers(self) -> list[nn.Module]:
        """Prunable: the classifier head stays whole."""
        return [self.hf.classifier]

    def pruning_options(self, ratio: float) -> dict[str, Any]:
        """Prunable: heads, FFN and hidden size pruned uniformly (`pruning_options`)."""
        return pruning_options(self, ratio)

    def ffn_pruning_options(self, ratio: float, ffn_ratio: float) -> dict[str, Any]:
        """PrunableFFN: the FFN by `ffn_ratio`, heads and hidden size by `ratio`."""
        return pruning_options(self, ratio, ffn_ratio)

    def after_pruning(self, pruner: object) -> None:
        """Prunable: attention bookkeeping and `hf.config` follow (`sync_after_pruning`)."""
        sync_after_pruning(self, pruner)

    def drop_layers(self, keep_ratio: float) -> TextClassifier:
        """Layered: keep evenly spaced encoder layers (`drop_layers`)."""
        return drop_layers(self, keep_ratio)

    def hidden_state_map(self, teacher: nn.Module) -> list[int]:
        """HiddenStates: matched through the layers each side kept (`hidden_state_map`)."""
        if not isinstance(teacher, TextClassifier):
            raise Unsupported(f"a {type(teacher).__name__} teacher has no BERT layers to match")
        return hidden_state_map(self, teacher)

    @staticmethod
    def hidden_state_mask(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """HiddenStates: the attention mask trimmed as the forward trims its batch."""
        return trimmed_attention_mask(*inputs)


# -- where things are ------------------------------------------------------------------


def _base(model: TextClassifier) -> nn.Module:
    return model.hf.base_model


def _layers(model: TextClassifier) -> nn.ModuleList:
    encoder = getattr(_base(model), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise Unsupported(
            f"{type(model.hf).__name__} has no `encoder.layer` list; only BERT-style encoders "
            "can be pruned or have layers dropped"
        )
    return layers


def _self_attentions(model: TextClassifier) -> Iterator[nn.Module]:
    """Every module with query/key/value Linears and a head size (BertSelfAttention & co)."""
    for module in model.hf.modules():
        linears = (getattr(module, name, None) for name in ("query", "key", "value"))
        if all(isinstance(m, nn.Linear) for m in linears) and hasattr(
            module, "attention_head_size"
        ):
            yield module


def _classifier_head(model: TextClassifier) -> list[nn.Module]:
    """The Linear(s) producing the label logits: their outputs must never be pruned."""
    head = getattr(model.hf, "classifier", None)
    if head is None:
        raise Unsupported(f"{type(model.hf).__name__} has no `classifier` head")
    num_labels = model.hf.config.num_labels
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return [m for m in linears if m.out_features == num_labels] or [head]


# -- shapes ----------------------------------------------------------------------------


def _live_shape(model: TextClassifier) -> dict[str, int]:
    """Read the shape from the modules; raise `Unsupported` if it is not one config's shape."""
    layers = _layers(model)
    embeddings = _base(model).embeddings.word_embeddings
    hidden = embeddings.embedding_dim
    heads: set[int] = set()
    head_sizes: set[int] = set()
    ffn: set[int] = set()
    for index, layer in enumerate(layers):
        attention = layer.attention.self
        widths = {attention.query.out_features, attention.key.out_features}
        widths.add(attention.value.out_features)
        if len(widths) != 1:
            raise Unsupported(f"layer {index}: query/key/value widths differ: {sorted(widths)}")
        heads.add(attention.num_attention_heads)
        head_sizes.add(attention.attention_head_size)
        ffn.add(layer.intermediate.dense.out_features)
        if attention.num_attention_heads * attention.attention_head_size != widths.pop():
            raise Unsupported(f"layer {index}: head bookkeeping does not match the q/k/v width")
        for name, width in _hidden_widths(layer):
            if width != hidden:
                raise Unsupported(f"layer {index}: {name} has width {width}, hidden is {hidden}")
    if len(heads) > 1 or len(ffn) > 1 or len(head_sizes) > 1:
        raise Unsupported(
            "layers were pruned non-uniformly "
            f"(heads {sorted(heads)}, head sizes {sorted(head_sizes)}, FFN widths {sorted(ffn)}); "
            "one BertConfig cannot describe them"
        )
    num_heads, head_size = heads.pop() if heads else 0, head_sizes.pop() if head_sizes else 0
    if layers and num_heads * head_size != hidden:
        raise Unsupported(
            f"hidden size {hidden} is not heads × head size ({num_heads} × {head_size}); "
            "BertConfig derives the head size from hidden_size / num_attention_heads"
        )
    pooler = getattr(_base(model), "pooler", None)
    if pooler is not None and pooler.dense.out_features != hidden:
        raise Unsupported(f"pooler width {pooler.dense.out_features} differs from hidden {hidden}")
    return {
        "num_hidden_layers": len(layers),
        "hidden_size": hidden,
        "num_attention_heads": num_heads,
        "intermediate_size": ffn.pop() if ffn else model.hf.config.intermediate_size,
        "num_labels": _classifier_head(model)[0].out_features,
    }


def _hidden_widths(layer: nn.Module) -> Iterator[tuple[str, int]]:
    """Every width inside one layer that must equal the hidden size."""
    attention = layer.attention
    yield "attention.self.query (in)", attention.self.query.in_features
    yield "attention.output.dense (out)", attention.output.dense.out_features
    yield "attention.output.LayerNorm", attention.output.LayerNorm.normalized_shape[0]
    yield "intermediate.dense (in)", layer.intermediate.dense.in_features
    yield "output.dense (out)", layer.output.dense.out_features
    yield "output.LayerNorm", layer.output.LayerNorm.normalized_shape[0]


# -- pruning ---------------------------------------------------------------------------


def pruning_options(
    model: TextClassifier, ratio: float, ffn_ratio: float | None = None
) -> dict[str, Any]:
    """`MetaPruner` keyword arguments that prune heads, FFN and hidden size uniformly.

    The head count is rounded to a whole number of heads first (at least one), and the
    hidden size follows it exactly (kept heads × head size), because BertConfig derives
    the head size as hidden_size / num_attention_heads. torch-pruning keeps
    `int(n * (1 - r))` channels and removes `ceil(r * heads)` heads; the ratios passed
    are offset by half a unit so float rounding cannot move either count by one.
    FFN channels are pruned by `ffn_ratio`, or `ratio` when it is None (a per-module
    ratio, same in every layer). BertConfig has one width for heads × head size and the
    hidden size, but its own `intermediate_size`: only the FFN can be cut on its own, and
    it holds two thirds of a layer's multiply-adds at MiniLM's shape.

    Each attention block also gets a positive channel ratio of its own: with
    `prune_head_dims=False` those channels are never removed, but torch-pruning only
    looks at head pruning for a group whose channel ratio prunes something.
    """
    ffn_cut = ratio if ffn_ratio is None else ffn_ratio
    for name, value in (("pruning", ratio), ("FFN pruning", ffn_cut)):
        if not 0.0 <= value < 1.0:
            raise Unsupported(f"{name} ratio {value} must be in [0, 1)")
    config = model.hf.config
    heads = config.num_attention_heads
    head_size = config.hidden_size // heads
    kept_heads = max(1, math.floor(heads * (1 - ratio) + 0.5))
    hidden = config.hidden_size
    kept_hidden = kept_heads * head_size
    head_ratio = (heads - kept_heads - 0.5) / heads if kept_heads < heads else 0.0
    hidden_ratio = (hidden - kept_hidden - 0.5) / hidden if kept_hidden < hidden else 0.0
    ffn = config.intermediate_size
    kept_ffn = max(1, int(ffn * (1 - ffn_cut)))
    ffn_pruner_ratio = (ffn - kept_ffn - 0.5) / ffn if kept_ffn < ffn else 0.0

    num_heads: dict[nn.Module, int] = {}
    ratios: dict[nn.Module, float] = {}
    for attention in _self_attentions(model):
        for linear in (attention.query, attention.key, attention.value):
            num_heads[linear] = attention.num_attention_heads
        if head_ratio > 0:
            ratios[attention] = 0.5  # the gate described above; only whole heads go
    for layer in _layers(model):
        ratios[layer.intermediate.dense] = max(ffn_pruner_ratio, 0.0)
    return {
        "pruning_ratio": max(hidden_ratio, 0.0),
        "pruning_ratio_dict": ratios,
        "num_heads": num_heads,
        "prune_num_heads": True,
        "prune_head_dims": False,
        "head_pruning_ratio": max(head_ratio, 0.0),
        "global_pruning": False,
        # The pooler is *not* ignored: its output is a hidden-size width in BertConfig,
        # and being pruned by the same ratio from the same width keeps it equal to it.
        "ignored_layers": _classifier_head(model),
    }


def sync_after_pruning(model: TextClassifier, pruner: Any) -> None:
    """Bring attention bookkeeping and `hf.config` in line with the pruned Linear shapes.

    torch-pruning changes weights only; BertSelfAttention reshapes with its own
    `attention_head_size` and scales by `scaling`, and reload reads the config.
    Raises `Unsupported` if the result cannot be described by one BertConfig; the
    attention modules are updated first, so the in-memory model still runs, but it
    must not be saved (`save_pretrained` refuses it too).
    """
    pruned_heads = getattr(pruner, "num_heads", None) or {}
    updates = []
    for attention in _self_attentions(model):
        width = attention.query.out_features
        heads = pruned_heads.get(attention.query)
        if heads is None:  # head dims untouched: the head size is still the old one
            heads = width // attention.attention_head_size
        if heads < 1 or width % heads:
            raise Unsupported(f"q/k/v width {width} is not a whole number of {heads} heads")
        updates.append((attention, heads, width // heads))
    for attention, heads, head_size in updates:
        attention.num_attention_heads = heads
        attention.attention_head_size = head_size
        attention.all_head_size = heads * head_size
        if hasattr(attention, "scaling"):
            attention.scaling = head_size**-0.5
    config = model.hf.config
    config.hidden_size = _base(model).embeddings.word_embeddings.embedding_dim
    if updates:
        config.num_attention_heads = updates[0][1]
    layers = _layers(model)
    if len(layers):
        config.intermediate_size = layers[0].intermediate.dense.out_features
    model.spec  # noqa: B018 - validates uniformity and config agreement, raises Unsupported


# -- layer dropping --------------------------------------------------------------------


def kept_layer_indices(num_layers: int, keep_ratio: float) -> list[int]:
    """The last layer of each of `keep` equal blocks of layers (so always the last one).

    `keep` is `num_layers × keep_ratio` rounded half up, at least 1. The last layer
    feeds the pooler, so keeping it preserves the representation the classifier was
    trained on; e.g. 6 layers at 0.5 keep 1, 3, 5; 5 layers at 0.5 keep 1, 3, 4.
    """
    keep = max(1, min(num_layers, math.floor(num_layers * keep_ratio + 0.5)))
    return [math.ceil((block + 1) * num_layers / keep) - 1 for block in range(keep)]


def drop_layers(model: TextClassifier, keep_ratio: float) -> TextClassifier:
    """Keep `max(1, round(L × keep_ratio))` encoder layers (in place; returns `model`).

    Which of the original layers were kept goes into `hf.config` (`KEPT_LAYERS_KEY`), so
    distillation can match each layer to its teacher layer, also after a reload.
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise Unsupported(f"layer keep ratio {keep_ratio} must be in (0, 1]")
    layers = _layers(model)
    kept = kept_layer_indices(len(layers), keep_ratio)
    if len(kept) == len(layers):
        return model
    origin = kept_layers(model)
    setattr(model.hf.config, KEPT_LAYERS_KEY, [origin[i] for i in kept])
    new_layers = nn.ModuleList([layers[i] for i in kept])
    for new_index, layer in enumerate(new_layers):
        for module in layer.modules():  # attention caches are indexed by layer position
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    _base(model).encoder.layer = new_layers
    model.hf.config.num_hidden_layers = len(new_layers)
    return model


def kept_layers(model: TextClassifier) -> list[int]:
    """For each of the model's layers, its index in the model before any layer was dropped.

    Read from `hf.config` where `drop_layers` wrote it; a model never cut is its own origin.
    """
    count = len(_layers(model))
    kept = getattr(model.hf.config, KEPT_LAYERS_KEY, None)
    if kept is None:
        return list(range(count))
    if len(kept) != count:
        raise Unsupported(
            f"config.{KEPT_LAYERS_KEY} names {len(kept)} layers but the model has {count}"
        )
    return list(kept)


def hidden_state_map(student: TextClassifier, teacher: TextClassifier) -> list[int]:
    """For each hidden state of the student's `forward_with_hidden_states`, the teacher's.

    Hidden state 0 is the embedding output (teacher's 0); hidden state i + 1 is the output
    of layer i, matched to the output of the teacher layer it was kept from. Both sides
    are read through `kept_layers`, so a teacher that was itself cut still lines up.
    """
    teacher_position = {origin: i for i, origin in enumerate(kept_layers(teacher))}
    missing = [origin for origin in kept_layers(student) if origin not in teacher_position]
    if missing:
        raise Unsupported(f"student layers {missing} have no counterpart in the teacher")
    return [0, *(teacher_position[origin] + 1 for origin in kept_layers(student))]


def trimmed_attention_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The attention mask as the model sees it after `_trim_padding`: one entry per
    position of its hidden states, 0 where a row is padding."""
    return _trim_padding(input_ids, attention_mask, token_type_ids)[1]


def _trim_padding(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Drop the columns that are padding in every row of the batch.

    With right padding and absolute positions this changes no logit, and it makes
    training and scoring in torch several times cheaper on short texts (tweets are
    ~25 tokens padded to 64). Never while tracing: the exported graph keeps its
    dynamic sequence axis and is measured at the study's full sequence length.
    """
    if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        return input_ids, attention_mask, token_type_ids
    length = max(int(attention_mask.sum(dim=1).max()), 1)
    if length == input_ids.shape[1]:
        return input_ids, attention_mask, token_type_ids
    trimmed = token_type_ids[:, :length] if token_type_ids is not None else None
    return input_ids[:, :length], attention_mask[:, :length], trimmed
