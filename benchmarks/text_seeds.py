"""Benchmark: the text study's selected recipe re-trained over several seeds.

One student's held-out macro-F1 moves by about a point between two trainings with the
same settings, so a single run cannot tell whether a recipe holds the 1.0-point limit.
This trains the teacher (cached) and the recipe with seeds 0..N-1 (seed 0 is what the
search trained), scores every model on the validation split (what the search sees) and
on the held-out test split (never seen by the search), gives each seed's test drop a
paired bootstrap interval (same tweets, teacher vs student), and measures the teacher
and every seed's student in one process with interleaved rounds. Writes its section of
BENCHMARKS.md.

    python benchmarks/text_seeds.py                # seeds 0, 1, 2; warm_start[0]
    python benchmarks/text_seeds.py --train-only   # train and cache the students only

Trained students are cached as ONNX under the study's artifacts folder
(`benchmarks/text_seeds/<recipe hash>/seed-<k>/`), so a rerun only re-scores and
re-measures. Skips (exit 0) when the shared data is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from autocompress.atomic import atomic_directory
from autocompress.config import TargetConfig, load_study_config
from autocompress.errors import UserError
from autocompress.pipeline import build_student
from autocompress.recipe import Recipe
from autocompress.targets import OnnxRuntimeTarget
from autocompress.tasks import build_task

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("autocompress")


def recipe_key(recipe: Recipe) -> str:
    return hashlib.sha256(json.dumps(recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def train_seed(task, teacher, recipe: Recipe, seed: int, folder: Path) -> Path:
    """The ONNX model of `recipe` trained with `seed` (cached in `folder`)."""
    model_path = folder / "model.onnx"
    if model_path.is_file():
        logger.info("seed %d: cached %s", seed, model_path)
        return model_path
    started = time.monotonic()
    student = build_student(task, teacher, recipe, seed=seed)
    target = OnnxRuntimeTarget(TargetConfig(batch_size=1, intra_op_threads=1))
    with atomic_directory(folder) as staging:
        target.materialize(task, student, recipe, staging)
        (staging / "training.json").write_text(
            json.dumps({"seed": seed, "minutes": (time.monotonic() - started) / 60})
        )
    logger.info("seed %d trained in %.1f min", seed, (time.monotonic() - started) / 60)
    return model_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(REPO / "studies" / "fin_sentiment_minilm.yaml"))
    parser.add_argument("--warm-start", type=int, default=0, help="which warm_start recipe")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        loaded = load_study_config(args.study)
        task = build_task(loaded.config)
    except UserError as error:
        print(f"skipped: {error}")
        return 0
    config = loaded.config
    torch.set_num_threads(config.workers.torch_threads)
    recipe = Recipe(**config.warm_start[args.warm_start])
    teacher = task.teacher(config.artifacts_path / "teachers")
    root = config.artifacts_path / "benchmarks" / "text_seeds" / recipe_key(recipe)
    models = {
        seed: train_seed(task, teacher, recipe, seed, root / f"seed-{seed}")
        for seed in range(args.seeds)
    }
    if args.train_only:
        print(json.dumps({seed: str(path) for seed, path in models.items()}, indent=2))
        return 0
    from text_seeds_report import report  # benchmarks/text_seeds_report.py

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        report(args, loaded, task, teacher, recipe, models, Path(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
