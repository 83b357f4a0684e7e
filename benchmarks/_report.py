"""What every benchmark writes: its own section of BENCHMARKS.md, and the machine and
versions every figure was measured on (figures from two machines are never compared)."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from pathlib import Path

from autocompress.targets import machine_fingerprint

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"


def machine_line() -> str:
    fp = machine_fingerprint()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"- machine: {fp['cpu_model']}, {fp['logical_cores']} logical cores, flags "
        f"{', '.join(fp['cpu_flags'])}; {platform.platform()}; load average at the end "
        f"{load}"
    )


def versions_line(*packages: str) -> str:
    listed = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"- versions: python {platform.python_version()}, {listed}"


def replace_section(name: str, section_lines: list[str], out: Path = BENCHMARKS) -> None:
    """Put `section_lines` between `<!-- name:start -->` and `<!-- name:end -->` in
    `out`, replacing what a previous run of the same benchmark wrote there."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = "\n".join([start, *section_lines, end])
    text = out.read_text() if out.exists() else "# Benchmarks\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    out.write_text(text)
