"""The shipped scheduler examples call `autocompress nightly` with options it has,
on a study that exists, and treat exit code 75 (lock held) as not-a-failure."""

from __future__ import annotations

import re
import shlex

import yaml

from autocompress.deploy import EXAMPLES, example
from tests.conftest import REPO, autocompress_cli


def nightly_options() -> set[str]:
    help_text = autocompress_cli("nightly", "--help").stdout
    return set(re.findall(r"--[a-z][a-z-]+", help_text))


def check_nightly_call(arguments: list[str]) -> None:
    start = arguments.index("nightly")
    assert arguments[start - 1].endswith("autocompress")
    study = arguments[start + 1]
    assert (REPO / study).is_file(), f"{study} is not a shipped study file"
    used = {a for a in arguments[start + 2 :] if a.startswith("--")}
    assert used <= nightly_options()


def test_every_example_ships_with_the_package() -> None:
    for kind in EXAMPLES:
        assert "autocompress" in example(kind) and "nightly" in example(kind)


def test_kubernetes_cronjob() -> None:
    job = yaml.safe_load(example("kubernetes"))
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(job["spec"]["schedule"].split()) == 5
    spec = job["spec"]["jobTemplate"]["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    check_nightly_call(container["command"])
    ignored = [r for r in spec["podFailurePolicy"]["rules"] if r["action"] == "Ignore"]
    assert ignored[0]["onExitCodes"]["values"] == [75]


def test_systemd_service_and_timer() -> None:
    service = example("systemd-service")
    exec_start = re.search(r"^ExecStart=(.+)$", service, re.M).group(1)
    check_nightly_call(shlex.split(exec_start))
    assert re.search(r"^SuccessExitStatus=75$", service, re.M)
    assert re.search(r"^Type=oneshot$", service, re.M)
    timer = example("systemd-timer")
    assert re.search(r"^OnCalendar=\S", timer, re.M)
    assert "Unit=autocompress-nightly.service" in timer


def test_cron_line() -> None:
    (line,) = [x for x in example("cron").splitlines() if x and not x.startswith("#")]
    fields = line.split(maxsplit=5)
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5])
    command = fields[5].split("&&")[-1].split(">>")[0]
    check_nightly_call(shlex.split(command))
    assert "-eq 75" in line
