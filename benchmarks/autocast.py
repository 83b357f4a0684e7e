"""Does bf16 autocast pay for training students on this machine, and what does it cost?

Credit (German, embedded; Taiwan, from `../shared/data` when present): one student
recipe (prune 50% l2, then distil 10 epochs, T=4, alpha=0.7, fp32 graph) is trained with
`workers.autocast` off (fp32) and forced bf16, seeds 0, 1, 2, one after another in this
process (one torch thread); seconds per epoch and the validation and test ROC AUC of the
exported graph. What `auto` decides here (the timed probe) is stated beside them.

Text (MiniLM, Twitter Financial News; skipped when absent): the student's own training
step (3 of 6 layers, FFN cut 80%, hidden-state distillation, batch 32) timed fp32 against
bf16 autocast, interleaved, as the `auto` probe does, without giving up early; and the
projected seconds per epoch. Where bf16 pays, the student is also trained `--text-epochs`
epochs each way: seconds per epoch and validation and test macro-F1.

Writes the `autocast` section of BENCHMARKS.md.

    python benchmarks/autocast.py [--seeds 0 1 2] [--datasets german taiwan text]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _report import REPO, machine_line, replace_section, versions_line

from autocompress.autocast import MIN_AUTOCAST_SPEEDUP, choose_autocast, decide, probe
from autocompress.config import load_study_config
from autocompress.passes.distill import DistillationStep, probe_step
from autocompress.pipeline import build_student, evaluate_recipe
from autocompress.recipe import Recipe
from autocompress.targets import OnnxRuntimeTarget
from autocompress.tasks import build_task

STUDIES = {
    "german": REPO / "studies" / "german_credit.yaml",
    "taiwan": REPO / "studies" / "taiwan_credit.yaml",
    "text": REPO / "studies" / "fin_sentiment_minilm.yaml",
}
CREDIT_RECIPE = Recipe(
    pruning_ratio=0.5, finetune_epochs=10, kd_temperature=4.0, kd_alpha=0.7, bits=32
)
TEXT_RECIPE = Recipe(
    layer_keep_ratio=0.5,
    ffn_pruning_ratio=0.8,
    finetune_epochs=1,
    kd_temperature=4.0,
    kd_alpha=0.7,
    hidden_distill_weight=1.0,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--repeats", type=int, default=5, help="text: timed steps each way")
    parser.add_argument(
        "--text-epochs",
        type=int,
        default=2,
        help="text, where bf16 pays: epochs the student is trained each way, for its F1",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "## bf16 autocast for training students (`benchmarks/autocast.py`)",
        "",
        machine_line(),
        versions_line("torch", "onnxruntime"),
        f"- one torch thread; `auto` uses bf16 only when the probe finds its step at least "
        f"{MIN_AUTOCAST_SPEEDUP}× faster than fp32",
        "",
    ]
    for name in args.datasets:
        loaded = load_study_config(STUDIES[name])
        data = loaded.config.task.data.path
        if not data.startswith("embedded:") and not Path(data).exists():
            lines += [f"- {name}: skipped ({data} is absent)", ""]
            continue
        lines += text_lines(loaded, args) if name == "text" else credit_lines(name, loaded, args)
    replace_section("autocast", lines)
    print("\n".join(lines))
    return 0


def train_timed(task, teacher, target, recipe: Recipe, folder: Path, seed: int, mode: str):
    """`recipe` trained with `workers.autocast` `mode` (files in `folder`, made here): its
    evaluation and the seconds each epoch took."""
    folder.mkdir()
    stamps: list[float] = []
    started = time.perf_counter()
    evaluation = evaluate_recipe(
        task,
        teacher,
        target,
        recipe,
        folder,
        seed=seed,
        on_epoch=lambda epoch, score: stamps.append(time.perf_counter()),
        autocast=mode,
    )
    return evaluation, [b - a for a, b in zip([started, *stamps], stamps, strict=False)]


def credit_lines(name: str, loaded, args: argparse.Namespace) -> list[str]:
    config = loaded.config
    task = build_task(config)
    teacher = task.teacher(config.artifacts_path / "teachers")
    target = OnnxRuntimeTarget(config.target)
    rows: dict[str, list[dict]] = {"off": [], "bf16": []}
    decided = None
    with tempfile.TemporaryDirectory(prefix="autocast-bench-") as work:
        for seed in args.seeds:
            for mode in ("off", "bf16"):
                folder = Path(work) / f"{mode}-{seed}"
                evaluation, epochs = train_timed(
                    task, teacher, target, CREDIT_RECIPE, folder, seed, mode
                )
                rows[mode].append(
                    {
                        "epoch_s": statistics.median(epochs),
                        "valid": task.score(evaluation.predictions["valid"], "valid")["roc_auc"],
                        "test": task.score(evaluation.predictions["test"], "test")["roc_auc"],
                    }
                )
        records: dict[str, object] = {}
        build_student(
            task,
            teacher,
            CREDIT_RECIPE,
            autocast="auto",
            cache_dir=Path(work) / "probes",
            records=records,
        )
        decided = records["training_autocast"]
    return [
        f"### {name}: {CREDIT_RECIPE.describe}",
        "",
        "| training | s / epoch (median) | validation AUC | test AUC |",
        "|---|---|---|---|",
        *(_credit_row(mode, values) for mode, values in rows.items()),
        "",
        f"- `auto` here: {decided['mode']} (probe: fp32 step {decided['fp32_step_s'] * 1e3:.1f} "
        f"ms, bf16 step {decided['bf16_step_s'] * 1e3:.1f} ms, speed-up "
        f"{decided['speedup']:.2f}×); mean ± sd over seeds {', '.join(map(str, args.seeds))}",
        "",
    ]


def _credit_row(mode: str, values: list[dict]) -> str:
    def stat(key: str, digits: int) -> str:
        column = [v[key] for v in values]
        spread = statistics.stdev(column) if len(column) > 1 else 0.0
        return f"{statistics.mean(column):.{digits}f} ± {spread:.{digits}f}"

    label = "fp32" if mode == "off" else "bf16 autocast (forced)"
    return f"| {label} | {stat('epoch_s', 3)} | {stat('valid', 4)} | {stat('test', 4)} |"


def text_lines(loaded, args: argparse.Namespace) -> list[str]:
    config = loaded.config
    task = build_task(config)
    teacher = task.teacher(config.artifacts_path / "teachers")
    structural = Recipe(**{**TEXT_RECIPE.to_dict(), "finetune_epochs": 0})
    student = build_student(task, teacher, structural)
    inputs, labels = task.train_tensors()
    settings = task.fit_settings(1)
    generator = torch.Generator().manual_seed(0)
    step = DistillationStep(student, TEXT_RECIPE, task, generator)
    batches = task.batch_order(len(labels), settings.batch_size, torch.Generator().manual_seed(0))
    fp32_s, bf16_s = probe(
        probe_step(student, step, inputs, labels, batches[0]),
        repeats=args.repeats,
        give_up_below=0.0,
    )
    speedup = fp32_s / bf16_s
    auto = choose_autocast(
        "auto", probe_step(student, step, inputs, labels, batches[0]), None, {"text": True}
    )
    return [
        f"### text: {TEXT_RECIPE.describe.replace(', 1ep', '')}, batch {settings.batch_size}",
        "",
        "| training | s / step (median) | projected s / epoch |",
        "|---|---|---|",
        f"| fp32 | {fp32_s:.3f} | {fp32_s * len(batches):.0f} |",
        f"| bf16 autocast | {bf16_s:.3f} | {bf16_s * len(batches):.0f} |",
        "",
        f"- {args.repeats} timed steps each way, interleaved, one warm-up each; "
        f"{len(batches)} steps per epoch; bf16 speed-up {speedup:.2f}× → the rule says "
        f"{decide(speedup)}; `auto`'s own probe chose {auto.mode} ({auto.speedup:.2f}×)",
        *(
            [
                "- student F1 under bf16 is measured only where bf16 pays (an epoch here "
                f"would take {bf16_s * len(batches) / 60:.0f} minutes)"
            ]
            if decide(speedup) == "fp32"
            else []
        ),
        "",
        *(text_f1_lines(task, teacher, config, args) if decide(speedup) == "bf16" else []),
    ]


def text_f1_lines(task, teacher, config, args: argparse.Namespace) -> list[str]:
    """Where bf16 pays: the student trained `--text-epochs` epochs each way (seed 0, fp32
    first), its seconds per epoch and macro-F1 on the validation and test splits."""
    recipe = Recipe(**{**TEXT_RECIPE.to_dict(), "finetune_epochs": args.text_epochs})
    target = OnnxRuntimeTarget(config.target)
    rows = []
    with tempfile.TemporaryDirectory(prefix="autocast-text-") as work:
        for mode in ("off", "bf16"):
            evaluation, epochs = train_timed(
                task, teacher, target, recipe, Path(work) / mode, 0, mode
            )
            f1 = {
                split: task.score(evaluation.predictions[split], split)["f1"]
                for split in ("valid", "test")
            }
            label = "fp32" if mode == "off" else "bf16 autocast (forced)"
            rows.append(
                f"| {label} | {statistics.median(epochs):.0f} | {len(epochs)} | "
                f"{f1['valid']:.4f} | {f1['test']:.4f} |"
            )
    return [
        f"Trained {args.text_epochs} epochs each way (seed 0; fp32 first, then bf16):",
        "",
        "| training | s / epoch (median) | epochs | validation macro-F1 | test macro-F1 |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
