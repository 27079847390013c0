"""What can be checked of the container stack without a Docker engine.

compose.yaml, docker/Dockerfile, .env.example and the Makefile targets: they
parse, every service is there with a healthcheck, the services start only
after what they need is healthy, every setting the code reads reaches the
containers, and published ports do not clash.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from auth_service import config as auth_config
from email_service import config as worker_config

ROOT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("auth_service", "email_service", "common")
SETTINGS_MODELS = (auth_config.Settings, worker_config.Settings)
APP_SERVICES = {"auth": "auth_service", "email-worker": "email_service"}
INFRASTRUCTURE = {"mongodb", "rabbitmq", "redis", "mailpit"}
COMPOSE_ONLY_SETTINGS = {"RABBITMQ_USER", "RABBITMQ_PASSWORD"}
# Ports the development machines' own servers use: the stack must not take them on the host.
LOCAL_SERVER_PORTS = {5672, 6379, 27017}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    settings = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f"not NAME=value: {line!r}"
            assert name not in settings, f"{name} listed twice"
            settings[name] = value
    return settings


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    # Read-only: given a path or no file object, the parser writes what it is handed back to disk.
    with open(ROOT / "docker" / "Dockerfile", "rb") as file:
        parser = DockerfileParser(fileobj=io.BytesIO(file.read()))
    return parser


def settings_read_by_the_code() -> set[str]:
    """Every setting of the services: a field of a settings model is the variable of its name in capitals."""
    return set().union(*(model.setting_names() for model in SETTINGS_MODELS))


def test_the_settings_models_are_the_only_settings_the_code_reads():
    # A settings class or a stray os.environ/getenv would be a setting the checks below cannot see.
    found = set()
    for package in CODE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, path
            for node in ast.walk(ast.parse(text)):
                bases = [ast.unparse(base) for base in node.bases] if isinstance(node, ast.ClassDef) else []
                if any(base.endswith("Settings") for base in bases):
                    found.add(f"{path.relative_to(ROOT).with_suffix('')}.{node.name}".replace("/", "."))
    models = {f"{model.__module__}.{model.__qualname__}" for model in SETTINGS_MODELS}
    assert found == models | {"common.settings.ServiceSettings"}
    for model in SETTINGS_MODELS:
        for name, field in model.model_fields.items():
            assert field.alias is None and field.validation_alias is None, f"{name}: its variable is its name"
    assert {
        "MONGO_URI",
        "JWT_SECRET",
        "SMTP_HOST",
        "CODE_HMAC_KEY",
        "WORKER_METRICS_PORT",
    } <= settings_read_by_the_code()


def test_env_example_lists_every_setting_the_code_reads_and_nothing_else(env_example):
    read = settings_read_by_the_code()
    assert sorted(read - env_example.keys()) == []
    assert sorted(env_example.keys() - read - COMPOSE_ONLY_SETTINGS) == []


def test_env_example_secrets_are_long_enough_and_rabbitmq_is_not_guest(env_example):
    for secret in ("JWT_SECRET", "CODE_HMAC_KEY"):
        assert len(env_example[secret].encode()) >= 32
    assert env_example["RABBITMQ_USER"] not in ("", "guest")
    assert env_example["RABBITMQ_PASSWORD"] not in ("", "guest")
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", env_example["RABBITMQ_PASSWORD"]), "must be usable inside a URL"
    auth_config.Settings.from_env(env_example)
    worker_config.Settings.from_env(env_example)


def test_compose_has_every_service_each_with_a_healthcheck(compose):
    services = compose["services"]
    assert set(services) == INFRASTRUCTURE | set(APP_SERVICES)
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert not service["healthcheck"].get("disable", False), name


def test_compose_uses_the_agreed_images_and_a_named_volume_for_mongodb(compose):
    services = compose["services"]
    assert services["mongodb"]["image"] == "mongo:7"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert services["redis"]["image"] == "redis:7"
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    [volume] = services["mongodb"]["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/data/db" and name in compose["volumes"]


def test_mailpit_offers_smtp_on_1025_and_its_web_ui_on_8025(compose):
    published = {container for _, container in published_ports(compose["services"]["mailpit"])}
    assert published == {1025, 8025}
    assert compose["services"]["email-worker"]["environment"]["SMTP_HOST"] == "mailpit"
    assert compose["services"]["email-worker"]["environment"]["SMTP_PORT"] == "1025"


def test_rabbitmq_credentials_come_from_env_not_guest(compose):
    rabbitmq = compose["services"]["rabbitmq"]["environment"]
    assert rabbitmq["RABBITMQ_DEFAULT_USER"].startswith("${RABBITMQ_USER")
    assert rabbitmq["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD")
    for service in APP_SERVICES:
        url = compose["services"][service]["environment"]["RABBITMQ_URL"]
        assert url.startswith("amqp://${RABBITMQ_USER") and "${RABBITMQ_PASSWORD" in url and "guest" not in url
        assert url.endswith("@rabbitmq:5672/%2F")


def test_every_variable_compose_interpolates_is_in_env_example(env_example):
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "compose.yaml").read_text()))
    assert used
    assert sorted(used - env_example.keys()) == []


def test_app_services_start_only_when_what_they_need_is_healthy(compose):
    needs = {"auth": {"mongodb", "rabbitmq", "redis"}, "email-worker": {"rabbitmq", "redis", "mailpit"}}
    for service, dependencies in needs.items():
        depends_on = compose["services"][service]["depends_on"]
        assert set(depends_on) == dependencies
        assert all(entry["condition"] == "service_healthy" for entry in depends_on.values())


def test_every_setting_reaches_the_app_containers(compose, env_example):
    """env_file passes .env whole; environment only re-points addresses at the other containers."""
    read = settings_read_by_the_code()
    for service, module in APP_SERVICES.items():
        definition = compose["services"][service]
        assert definition["env_file"] == [".env"]
        assert definition["command"] == ["python", "-m", module]
        assert definition["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}
        overrides = definition["environment"]
        assert set(overrides) <= read, "an override of a setting nobody reads"
        passed = env_example.keys() | overrides.keys()
        assert sorted(read - passed) == []
    auth = compose["services"]["auth"]["environment"]
    assert auth["MONGO_URI"] == "mongodb://mongodb:27017"
    assert auth["REDIS_URL"].startswith("redis://redis:6379/")
    assert auth["RATELIMIT_STORAGE_URI"].startswith("redis://redis:6379/")
    assert auth["AUTH_HOST"] == "0.0.0.0"
    worker = compose["services"]["email-worker"]["environment"]
    assert worker["REDIS_URL"].startswith("redis://redis:6379/")
    assert worker["WORKER_METRICS_HOST"] == "0.0.0.0"


def test_app_healthchecks_probe_the_ports_the_services_listen_on(compose):
    auth = compose["services"]["auth"]
    assert auth["healthcheck"]["test"][-1] == f"http://127.0.0.1:{auth['environment']['AUTH_PORT']}/readyz"
    worker = compose["services"]["email-worker"]
    port = worker["environment"]["WORKER_METRICS_PORT"]
    assert worker["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/readyz"
    assert int(port) != 0


def published_ports(service: dict) -> list[tuple[int, int]]:
    ports = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) == 3 and parts[0] == "127.0.0.1", f"publish on loopback only: {entry}"
        ports.append((int(parts[1]), int(parts[2])))
    return ports


def test_published_ports_do_not_clash_and_the_worker_scales(compose):
    host_ports = [host for service in compose["services"].values() for host, _ in published_ports(service)]
    assert len(host_ports) == len(set(host_ports))
    assert not set(host_ports) & LOCAL_SERVER_PORTS
    assert published_ports(compose["services"]["auth"]) == [(8000, 8000)]
    worker = compose["services"]["email-worker"]
    assert "ports" not in worker and "container_name" not in worker, "--scale email-worker=3 needs neither"


def test_dockerfile_installs_pinned_requirements_before_the_code_and_runs_as_non_root(dockerfile):
    assert dockerfile.baseimage == "python:3.11-slim"
    steps = [(item["instruction"], item["value"]) for item in dockerfile.structure]
    copies = [(index, value.split()[0]) for index, (instruction, value) in enumerate(steps) if instruction == "COPY"]
    copy_requirements = next(index for index, source in copies if source == "requirements/base.txt")
    install = next(i for i, (ins, value) in enumerate(steps) if ins == "RUN" and "-r requirements/base.txt" in value)
    first_code_copy = min(index for index, source in copies if source != "requirements/base.txt")
    assert copy_requirements < install < first_code_copy
    assert all("==" in line for line in requirement_lines())

    users = [value for instruction, value in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in [instruction for instruction, _ in steps]
    assert dockerfile.cmd == '["python", "-m", "auth_service"]'


def requirement_lines() -> list[str]:
    lines = (ROOT / "requirements" / "base.txt").read_text().splitlines()
    return [line for line in lines if line and not line.startswith((" ", "#", "-"))]


def test_dockerfile_copies_everything_the_services_import(dockerfile):
    copied = {item["value"].split()[0].rstrip("/") for item in dockerfile.structure if item["instruction"] == "COPY"}
    assert {"common", "auth_service", "email_service", "docker/healthcheck.py"} <= copied
    for package in ("auth_service", "email_service"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    top = node.module.split(".")[0]
                    assert top not in ("devtools", "tests", "bench"), f"{path} imports {node.module}"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "tests"} <= ignored


def test_make_up_builds_waits_for_health_and_prints_the_urls():
    plan = subprocess.run(["make", "-n", "-C", str(ROOT), "up"], capture_output=True, text=True, check=True).stdout
    assert "docker compose up -d --build --wait" in plan
    assert "http://localhost:8000/docs" in plan and "http://localhost:8025" in plan
    for target, command in {"down": "compose down", "logs": "compose logs", "ps": "compose ps"}.items():
        plan = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True)
        assert command in plan.stdout
