"""compose.yaml (the service, PostGIS and Redis), checked by `docker-compose config`: the Compose
schema, interpolation and the references between services, without a container engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import Settings
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parent.parent


def _config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        if IN_CI:
            pytest.fail("docker-compose is required under CI=true (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CROSSINGS_")}
    return subprocess.run(
        [tool, "--project-directory", str(REPO), "-f", str(path), "config"],
        capture_output=True,
        text=True,
        env=clean | env,
        check=False,
        timeout=60,
    )


def test_compose_file_is_valid_and_wires_the_service_to_postgis_and_redis() -> None:
    done = _config(REPO / "compose.yaml", CROSSINGS_DB_PASSWORD="s3cret")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {"crossings", "db", "redis"}
    assert services["db"]["image"].startswith("postgis/postgis:")
    app = services["crossings"]
    env = app["environment"]
    assert env["CROSSINGS_DATABASE_URL"] == (
        "postgresql+psycopg://crossings:s3cret@db:5432/crossings"
    )
    assert env["CROSSINGS_REDIS_URL"] == "redis://redis:6379/0"
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    # Every variable the service is given is a setting it reads.
    fields = {f"CROSSINGS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields
    Settings(**{k.removeprefix("CROSSINGS_").lower(): v for k, v in env.items()})


def test_compose_refuses_to_start_without_a_database_password() -> None:
    done = _config(REPO / "compose.yaml")
    assert done.returncode != 0
    assert "CROSSINGS_DB_PASSWORD" in done.stderr


def test_the_check_catches_a_misspelt_option(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text((REPO / "compose.yaml").read_text().replace("depends_on:", "depend_on:"))
    done = _config(broken, CROSSINGS_DB_PASSWORD="s3cret")
    assert done.returncode != 0
    assert "depend_on" in done.stderr
