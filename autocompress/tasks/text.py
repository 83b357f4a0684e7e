"""Financial-text classification with Hugging Face BERT-family checkpoints.

The teacher is a local checkpoint (never downloaded) with a classification head,
fine-tuned once per study and cached with its training-split logits, so every
trial distils from the same teacher without recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autocompress.config import StudyConfig
from autocompress.errors import UserError
from autocompress.models.bert import TextClassifier, trimmed_attention_mask
from autocompress.tasks.base import Task
from autocompress.tasks.data_files import file_sha256, resolve_model_folder
from autocompress.tasks.metrics import classification_metrics
from autocompress.tasks.text_augment import WordNeighbours
from autocompress.tasks.text_config import TextTaskConfig
from autocompress.tasks.text_data import load_text_splits
from autocompress.training import FitSettings, fit

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local folders only
logger = logging.getLogger("autocompress")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
LOGITS_FILE = "teacher_train_logits.npy"
LABELS_FILE = "labels.json"
SUPPORTED_MODEL_TYPES = ("bert",)
EVAL_BATCH = 128


class TextTask(Task):
    """Sequence classification; `f1` is macro-F1 unless the study says otherwise."""

    def __init__(self, config: TextTaskConfig, f1_average: str, where=lambda key: key) -> None:
        from transformers import AutoConfig, AutoTokenizer

        self.config = config
        self.f1_average = f1_average
        self.seed = config.data.seed
        self.splits = load_text_splits(config.data, where)
        self.model_dir = resolve_model_folder(config.model.path, where("task.model.path"))
        if not (self.model_dir / "config.json").is_file():
            raise UserError(
                f"{where('task.model.path')}: {self.model_dir} is not a Hugging "
                "Face checkpoint folder (no config.json)"
            )
        self.hf_config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        _check_checkpoint(self.hf_config, self.splits.label_names, config, where)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as error:
            raise UserError(
                f"{where('task.model.path')}: no usable tokenizer in "
                f"{self.model_dir}: {str(error).splitlines()[0]}"
            ) from None
        self._tensors = {name: self._tokenize(texts) for name, texts in self.splits.texts.items()}
        self._teacher_logits: torch.Tensor | None = None
        self._teacher_states: list[torch.Tensor] | None = None
        self._neighbours: WordNeighbours | None = None

    @classmethod
    def from_config(cls, config: StudyConfig) -> TextTask:
        return cls(config.task, config.objectives.f1_average, config.where)

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, ...]:
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.config.model.max_seq_length,
            return_tensors="pt",
        )
        if "token_type_ids" not in encoded:
            encoded["token_type_ids"] = torch.zeros_like(encoded["input_ids"])
        return tuple(encoded[name] for name in INPUT_NAMES)

    # -- data and teacher ------------------------------------------------------------
    def fingerprint(self) -> str:
        payload = json.dumps(
            {
                "data": [file_sha256(path) for path in self.splits.files],
                "data_config": self.config.data.model_dump(exclude={"path", "test_path"}),
                "model": file_sha256(
                    next(
                        iter(sorted(self.model_dir.glob("*.safetensors"))),
                        self.model_dir / "config.json",
                    )
                ),
                "max_seq_length": self.config.model.max_seq_length,
                "teacher": self.config.teacher.model_dump(),
                "torch": torch.__version__,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    cache_prefix = "text"
    pruned_units = "attention heads, hidden size and FFN channels"
    model_class = TextClassifier

    def _train_teacher(self) -> nn.Module:
        teacher = self._fine_tune_teacher()
        self._teacher_logits = self._logits(teacher, "train")
        return teacher

    def _save_teacher(self, teacher: nn.Module, folder: Path) -> None:
        teacher.save_pretrained(folder)
        np.save(folder / LOGITS_FILE, self._teacher_logits.numpy())

    def _load_teacher(self, folder: Path) -> nn.Module:
        self._teacher_logits = torch.from_numpy(np.load(folder / LOGITS_FILE))
        return self.model_class.from_pretrained(folder)

    def _fine_tune_teacher(self) -> TextClassifier:
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(self.seed)
        names = self.splits.label_names
        hf = AutoModelForSequenceClassification.from_pretrained(
            self.model_dir,
            local_files_only=True,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
            ignore_mismatched_sizes=self.config.model.reinit_head,
        )
        model = TextClassifier.from_hf(hf)
        inputs, labels = self.train_tensors()
        settings = self.config.teacher
        logger.info(
            "fine-tuning the teacher on %d sentences for up to %d epochs (once per "
            "study; cached afterwards)",
            len(labels),
            settings.epochs,
        )
        started = time.monotonic()

        def report(epoch: int, score: float) -> None:
            logger.info(
                "teacher epoch %d/%d: validation %s-F1 %.4f (%.0f s)",
                epoch,
                settings.epochs,
                self.f1_average,
                score,
                time.monotonic() - started,
            )

        fit(
            model,
            inputs,
            labels,
            loss_fn=lambda logits, y, _: self.label_loss(logits, y),
            score_fn=self.validation_score,
            settings=FitSettings.of(settings, settings.epochs, self.seed),
            on_epoch=report,
            progress="teacher fine-tuning",
            batch_order=self.batch_order,
        )
        return model

    def train_tensors(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        return self._tensors["train"], torch.from_numpy(self.splits.labels["train"])

    def batch_order(self, rows: int, batch_size: int, generator: torch.Generator) -> list:
        """Batches of similar length (random within and across groups of 50 batches), so
        trimmed padding makes training several times cheaper (as `group_by_length`)."""
        lengths = self._tensors["train"][1].sum(dim=1)
        permutation = torch.randperm(rows, generator=generator)
        group = batch_size * 50
        batches = []
        for start in range(0, rows, group):
            chunk = permutation[start : start + group]
            chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
            batches += list(chunk.split(batch_size))
        shuffled = torch.randperm(len(batches), generator=generator)
        return [batches[i] for i in shuffled]

    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def fit_settings(self, epochs: int) -> FitSettings:
        return FitSettings.of(self.config.finetune, epochs, self.seed)

    def teacher_logits(self) -> torch.Tensor:
        if self._teacher_logits is None:
            raise RuntimeError("teacher() must be called before teacher_logits()")
        return self._teacher_logits

    def _logits(self, model: nn.Module, split: str) -> torch.Tensor:
        model.eval()
        tensors = self._tensors[split]
        with torch.no_grad():
            return torch.cat(
                [
                    model(*(t[start : start + EVAL_BATCH] for t in tensors))
                    for start in range(0, len(tensors[0]), EVAL_BATCH)
                ]
            )

    validation_metric = "f1"

    def validation_score(self, model: nn.Module) -> float:
        logits = self._logits(model, "valid").numpy()
        return classification_metrics(logits, self.labels("valid"), self.f1_average)["f1"]

    # -- inputs for the passes ---------------------------------------------------------
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return tuple(t[:2] for t in self._tensors["train"])

    def teacher_hidden_states(self, index: torch.Tensor) -> list[torch.Tensor]:
        """From a cache of the whole training split, built on first use in a process:
        the teacher's forward would otherwise cost as much as the student's training step.
        Stored in fp16, zero beyond each row's length (about 3 GB for 8,600 tweets at
        64 tokens and 7 states); returned in fp32, trimmed as the student's batch is."""
        if self._teacher_states is None:
            self._teacher_states = self._all_teacher_states()
        length = trimmed_attention_mask(*(t[index] for t in self._tensors["train"])).shape[1]
        return [states[index, :length].float() for states in self._teacher_states]

    def _all_teacher_states(self) -> list[torch.Tensor]:
        """One pass of the teacher over the training split, shortest rows first so each
        batch is trimmed to little more than its own length."""
        teacher = self.loaded_teacher().eval()
        tensors = self._tensors["train"]
        rows, columns = tensors[0].shape
        by_length = torch.argsort(tensors[1].sum(dim=1), stable=True)
        cache: list[torch.Tensor] = []
        with torch.no_grad():
            for index in by_length.split(EVAL_BATCH):
                batch = tuple(t[index] for t in tensors)
                states = teacher.forward_with_hidden_states(*batch)[1]
                if not cache:
                    cache = [
                        torch.zeros(rows, columns, s.shape[-1], dtype=torch.float16) for s in states
                    ]
                mask = trimmed_attention_mask(*batch).unsqueeze(-1).to(torch.float16)
                for stored, state in zip(cache, states, strict=True):
                    stored[index, : state.shape[1]] = state.to(torch.float16) * mask
        return cache

    def augment(
        self, inputs: tuple[torch.Tensor, ...], word_prob: float, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Whole words replaced by neighbours in the teacher's input embeddings
        (`text_augment`); the neighbour table is built on first use in a process."""
        if self._neighbours is None:
            teacher = self.loaded_teacher()
            self._neighbours = WordNeighbours(
                teacher.hf.get_input_embeddings().weight,
                self.tokenizer.get_vocab(),
                self._tensors["train"][0],
            )
        input_ids, attention_mask, *rest = inputs
        replaced, rows = self._neighbours.replace(input_ids, attention_mask, word_prob, generator)
        return (replaced, attention_mask, *rest), rows

    # -- ONNX side ---------------------------------------------------------------------
    def export_onnx(self, model: nn.Module, path: Path) -> None:
        model.eval()
        axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
        torch.onnx.export(
            model,
            self.example_inputs(),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )

    def feeds(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        return {
            name: t[:limit].numpy()
            for name, t in zip(INPUT_NAMES, self._tensors[split], strict=True)
        }

    def labels(self, split: str) -> np.ndarray:
        return self.splits.labels[split]

    def write_extras(self, folder: Path) -> list[str]:
        before = {p.name for p in folder.iterdir()}
        self.tokenizer.save_pretrained(folder)
        (folder / LABELS_FILE).write_text(
            json.dumps(
                {
                    "id2label": dict(enumerate(self.splits.label_names)),
                    "max_seq_length": self.config.model.max_seq_length,
                    "inputs": list(INPUT_NAMES),
                    "padding": "max_length",
                },
                indent=2,
            )
        )
        return sorted({p.name for p in folder.iterdir()} - before)


def _check_checkpoint(hf_config, label_names: list[str], config: TextTaskConfig, where) -> None:
    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    key = where("task.model.path")
    if type(hf_config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise UserError(
            f"{key}: a {hf_config.model_type!r} checkpoint cannot be a sequence "
            "classifier; give a BERT-family encoder checkpoint"
        )
    if hf_config.model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"{key}: model type {hf_config.model_type!r} is not supported yet; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    architectures = hf_config.architectures or []
    has_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    if has_head and not config.model.reinit_head:
        head = [hf_config.id2label[i] for i in sorted(hf_config.id2label)]
        if len(head) != len(label_names) or (
            not all(name.startswith("LABEL_") for name in head) and head != label_names
        ):
            raise UserError(
                f"{where('task.data.label_names')}: the data's labels {label_names} "
                f"do not match the checkpoint's classifier head {head}; fix the "
                "labels or set task.model.reinit_head: true to train a new head"
            )
    limit = hf_config.max_position_embeddings
    if config.model.max_seq_length > limit:
        raise UserError(
            f"{where('task.model.max_seq_length')}: {config.model.max_seq_length} "
            f"is over the model's maximum of {limit} positions; use at most {limit}"
        )
