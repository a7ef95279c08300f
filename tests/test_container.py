"""The Dockerfile, checked the only way a machine without a container engine can: its recipe is
replayed by scripts/check-container (the same Debian base made by mmdebstrap, every RUN step under
chroot, the CMD as the image's user) and the service it makes must store and read a report."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "check-container"
DOCKERFILE = REPO / "Dockerfile"


@functools.cache
def _checker() -> ModuleType:
    """The script as a module (it has no .py suffix: it is a command)."""
    loader = importlib.machinery.SourceFileLoader("check_container", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_container", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_container"] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def test_the_check_replays_every_step_of_the_dockerfile() -> None:
    checker = _checker()
    text = (REPO / "Dockerfile").read_text()
    recipe = checker.parse(text)
    runs = [step for kind, step in recipe.steps if kind == "RUN"]
    copies = [step for kind, step in recipe.steps if kind == "COPY"]
    lines = [line for line in text.splitlines() if not line.startswith((" ", "#")) and line]
    assert len(runs) == sum(line.startswith("RUN ") for line in lines)
    assert len(copies) == sum(line.startswith("COPY ") for line in lines)
    assert recipe.base == "debian:bookworm-slim"
    assert recipe.user not in ("root", "0", "")
    assert recipe.cmd[-1].index("crossings db upgrade") < recipe.cmd[-1].index("crossings serve")
    assert recipe.healthcheck and recipe.volumes == ["/data"]
    assert recipe.env["CROSSINGS_DATABASE_URL"] == "sqlite:////data/crossings.db"


@pytest.mark.parametrize(
    "line",
    [
        "ADD https://example.org/x /x",
        "FROM python:3.11-slim",
        "COPY --from=build /a /b",
        "ENV A=$B",
    ],
)
def test_a_step_the_check_cannot_reproduce_is_refused(line: str) -> None:
    checker = _checker()
    text = (REPO / "Dockerfile").read_text()
    changed = (
        text.replace("FROM debian:bookworm-slim", line)
        if line.startswith("FROM")
        else (text + "\n" + line + "\n")
    )
    with pytest.raises(checker.RecipeError):
        checker.parse(changed)


def test_the_image_is_built_from_this_machines_debian_mirror() -> None:
    sources = _checker().debian_sources()
    assert "Suites: bookworm" in sources and "bookworm-security" in sources


@pytest.mark.slow
def test_the_container_recipe_builds_serves_and_stores_a_report(tmp_path: Path) -> None:
    missing = [tool for tool in ("mmdebstrap", "unshare", "chroot") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        reason = f"needs root and {', '.join(missing) or 'nothing else'}"
        if IN_CI:
            pytest.fail(f"the container check must run under CI=true: {reason}")
        pytest.skip(reason)
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(report_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["problems"] == []
    assert report["post_status"] == 201 and report["read_status"] == 200
    assert report["read_back"]["snap_status"] == "snapped"
    assert report["server_uid"] != 0 and report["healthcheck_exit"] == 0
    runs = [step for kind, step in _checker().parse(DOCKERFILE.read_text()).steps if kind == "RUN"]
    assert [step["value"] for step in report["steps"] if step["step"] == "RUN"] == runs
