"""A tiny randomly initialised BERT checkpoint and generated financial sentences.

Real tokenizer (the one shipped with all-MiniLM-L6-v2), real transformers model
classes, no downloads; small enough that a study takes seconds.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd

COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"]
WORDS = {
    "bearish": ["plunge", "slump", "drop", "tumble", "sink"],
    "bullish": ["soar", "jump", "rally", "surge", "climb"],
    "neutral": ["report", "announce", "schedule", "publish", "confirm"],
}


def make_sentences(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    records = []
    for i in range(rows):
        label = i % 3
        name = list(WORDS)[label]
        text = (
            f"shares of {rng.choice(COMPANIES)} {rng.choice(WORDS[name])} after quarter {i} results"
        )
        records.append({"text": text, "label": label})
    return pd.DataFrame(records)


def make_tiny_bert(folder: Path, **config: Any) -> Path:
    """A BertModel checkpoint (no head, like all-MiniLM-L6-v2) plus its tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from autocompress.tasks.data_files import resolve_model_folder

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_folder("embedded:all-minilm-l6-v2"))
    settings = {
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        **config,
    }
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **settings)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_text_study(tmp_path: Path, model_dir: Path, data_file: Path, **overrides: Any) -> dict:
    study: dict[str, Any] = {
        "study_name": "tiny-text",
        "search_space": {
            "layer_keep_ratio": {"choices": [1.0, 0.5]},
            "pruning_ratio": {"choices": [0.0, 0.5]},
            "finetune_epochs": {"low": 1, "high": 2},
            "kd_temperature": {"low": 1.0, "high": 4.0},
            "kd_alpha": {"low": 0.0, "high": 1.0},
            "bits": {"choices": [32, 8, 4]},
            "int8_mode": {"choices": ["dynamic"]},
            "int4_block_size": {"choices": [16]},
        },
        "storage": f"sqlite:///{tmp_path / 'text.db'}",
        "artifacts_dir": str(tmp_path / "artifacts"),
        "n_trials": 3,
        "task": {
            "kind": "text",
            "model": {"path": str(model_dir), "max_seq_length": 16},
            "data": {"path": str(data_file), "label_names": ["bearish", "bullish", "neutral"]},
            "teacher": {"epochs": 2, "batch_size": 16, "learning_rate": 0.001},
            "finetune": {"batch_size": 16, "learning_rate": 0.001},
        },
        "objectives": {"metrics": ["f1", "latency_p50_ms"], "f1_average": "macro"},
        "constraints": {"max_accuracy_drop": None, "max_f1_drop": 0.5},
        "target": {"batch_size": 1, "warmup": 2, "repeats": 5},
        "export": {"dir": str(tmp_path / "exports")},
    }
    study.update(overrides)
    return study
