"""Export folders: the selected model, what rebuilds it, what it scored, and a manifest.

Written atomically (staging folder + rename), and only where nothing but an empty
folder or an earlier export that still verifies would be replaced. `manifest.json`
holds the sha256 of every other file; `verify` (in `manifest.py`, re-exported here)
recomputes them and names every difference. With a signing key, `manifest.sig` holds
the Ed25519 signature of `manifest.json`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import FrozenTrial

from autocompress import __version__
from autocompress.atomic import atomic_directory
from autocompress.config import LoadedStudy
from autocompress.errors import UserError
from autocompress.manifest import (
    MANIFEST,
    export_refusal,
    file_sha256,
    load_private_key,
    sign_manifest,
    verify,
    write_manifest,
)

__all__ = ["MANIFEST", "export_trial", "verify", "write_manifest"]


def export_trial(
    trial: FrozenTrial,
    loaded: LoadedStudy,
    artifact_store: FileSystemArtifactStore,
    out: Path,
    policy: str,
    study_info: dict[str, Any],
    overwrite: bool = False,
    sign_key: str | Path | None = None,
    *,
    selection: dict[str, Any] | None = None,
) -> str:
    """Write `trial`'s export to `out`; returns the manifest's own sha256.

    An existing `out` is replaced only with `overwrite`, and only if it is an empty
    folder or an autocompress export that verifies; anything else raises `UserError`
    and stays as it was. `sign_key` (an Ed25519 PEM private key, see `autocompress
    keygen`) adds `manifest.sig`, written before the folder appears.

    `metrics.json` says what each number is: `metrics` and the changes are on the split
    the search saw (`scored_on`, `search_split`), with their `change_intervals`;
    `held_out` is the test split, never used for choosing; `selection` (policy, trials
    considered, constraint mode, re-training with seeds) is how this trial was chosen.
    Trials stored before these were recorded carry None.
    """
    artifacts: dict[str, str] = trial.user_attrs.get("artifacts", {})
    if not artifacts:
        raise UserError(f"trial {trial.number} has no stored model; it cannot be exported")
    key = load_private_key(sign_key) if sign_key is not None else None
    with atomic_directory(out, overwrite=overwrite, refusal=export_refusal) as staging:
        for name, artifact_id in artifacts.items():
            try:
                download_artifact(
                    artifact_store=artifact_store,
                    file_path=str(staging / name),
                    artifact_id=artifact_id,
                )
            except Exception as error:  # the store raises its own not-found errors
                raise UserError(
                    f"trial {trial.number}: stored artifact {name} ({artifact_id}) "
                    f"is missing from the artifact store: {error}"
                ) from None
        config = {
            "format": "autocompress.export/1",
            "autocompress_version": __version__,
            "created_at": datetime.now(UTC).isoformat(),
            "study": {**study_info, "trial_number": trial.number, "policy": policy},
            "recipe": trial.user_attrs["recipe"],
            "student_spec": trial.user_attrs["student_spec"],
            "task": loaded.config.task.model_dump(),
            "target": loaded.config.target.model_dump(),
        }
        (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        attrs = trial.user_attrs
        search_split = attrs.get("search_split")
        metrics = {
            "metrics": attrs["metrics"],
            # The split `metrics` and the changes are on: what the search and selection saw.
            "scored_on": search_split.get("split") if search_split else None,
            "search_split": search_split,
            "measurement": trial.user_attrs["measurement"],
            "accuracy_drop": trial.user_attrs.get("accuracy_drop"),
            "f1_drop": trial.user_attrs.get("f1_drop"),
            "num_parameters": trial.user_attrs.get("num_parameters"),
            "objectives": dict(zip(loaded.config.objectives.metrics, trial.values, strict=True)),
            "changes_vs_teacher": {
                name: value
                for name, value in trial.user_attrs.items()
                if name.endswith(("_drop", "_increase"))
            },
            "change_intervals": attrs.get("change_intervals"),
            "held_out": attrs.get("held_out"),  # never used for choosing
            "constraint_mode": attrs.get("constraint_mode"),
            "selection": selection,
            **_graph_facts(staging / "model.onnx"),
        }
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_manifest(staging)
        if key is not None:
            sign_manifest(staging, key)
    return file_sha256(out / MANIFEST)


def _graph_facts(model_path: Path) -> dict:
    """What the exported graph says about itself (credit: the class mapping and the
    decision threshold), repeated in metrics.json for readers without onnx."""
    if not model_path.is_file():
        return {}
    from autocompress.tasks.graph_keys import (
        CLASSES_KEY,
        DECISION_RULE_KEY,
        THRESHOLD_KEY,
        read_metadata,
    )

    props = read_metadata(model_path)
    facts = {}
    for key, name in (
        (CLASSES_KEY, "classes"),
        (THRESHOLD_KEY, "decision_threshold"),
        (DECISION_RULE_KEY, "decision_rule"),
    ):
        if key in props:
            facts[name] = json.loads(props[key])
    return facts
