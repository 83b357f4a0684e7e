"""Scheduler examples for `autocompress nightly`, shipped with the package.

cron, a systemd service + timer, and a Kubernetes CronJob. Each treats exit code
75 (another run holds the study's database lock) as "try again next time", not as
a failure. Print one with: python -c "import autocompress.deploy as d; print(d.example('cron'))"
"""

from __future__ import annotations

from importlib.resources import files

EXAMPLES = {
    "cron": "crontab.txt",
    "systemd-service": "autocompress-nightly.service",
    "systemd-timer": "autocompress-nightly.timer",
    "kubernetes": "cronjob.yaml",
}


def example(kind: str) -> str:
    """The text of one scheduler example (see `EXAMPLES` for the kinds)."""
    return files(__name__).joinpath(EXAMPLES[kind]).read_text(encoding="utf-8")
