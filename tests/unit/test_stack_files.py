"""What can be checked of the container stack without a Docker engine.

compose.yaml, docker/Dockerfile, docker/rabbitmq/, .env.example and the
Makefile targets: they parse, every service is there with a healthcheck, the
services start only after what they need is healthy, every setting the code
reads reaches the containers, published ports do not clash, and each service
logs in to the broker with an account of its own that the broker's
definitions limit to what it needs.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from auth_service import config as auth_config
from common.messaging import access, topology
from email_service import config as worker_config

ROOT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("auth_service", "email_service", "common")
SETTINGS_MODELS = (auth_config.Settings, worker_config.Settings, access.BrokerSettings)
APP_SERVICES = {"auth": "auth_service", "email-worker": "email_service"}
INFRASTRUCTURE = {"mongodb", "rabbitmq", "redis", "mailpit"}
# Metrics, alerts and dashboards over the services (docker/prometheus, docker/grafana).
MONITORING = {"prometheus", "grafana"}
# Run once and exit: the broker's definitions at every start, the dead-letter command on demand.
ONE_SHOT = {"rabbitmq-definitions", "dlq", "auth-migrate"}
BROKER_ROLES = {"auth": "auth", "email-worker": "worker", "dlq": "admin"}
BROKER_PASSWORDS = {"RABBITMQ_ADMIN_PASSWORD", "RABBITMQ_AUTH_PASSWORD", "RABBITMQ_WORKER_PASSWORD"}
BROKER_URL = re.compile(
    r"amqp://\$\{(RABBITMQ_[A-Z]+)_USER:\?[^}]*\}:\$\{(RABBITMQ_[A-Z]+)_PASSWORD:\?[^}]*\}@rabbitmq:5672/%2F"
)
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
            # The settings loader is the one reader of the process environment.
            if path != ROOT / "common" / "settings.py":
                assert "os.environ" not in text and "getenv" not in text, path
            for node in ast.walk(ast.parse(text)):
                bases = [ast.unparse(base) for base in node.bases] if isinstance(node, ast.ClassDef) else []
                if any(base.endswith(("Settings", "SettingsModel")) for base in bases):
                    found.add(f"{path.relative_to(ROOT).with_suffix('')}.{node.name}".replace("/", "."))
    models = {f"{model.__module__}.{model.__qualname__}" for model in SETTINGS_MODELS}
    assert found == models | {"common.settings.ServiceSettings"}
    environment_reads = re.findall(r"os\.environ\b|getenv", (ROOT / "common" / "settings.py").read_text())
    assert environment_reads == ["os.environ"], "the loader reads the environment in one place"
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
    assert sorted(env_example.keys() - read) == []


def test_env_example_secrets_are_long_enough_and_rabbitmq_is_not_guest(env_example):
    for secret in ("JWT_SECRET", "CODE_HMAC_KEY"):
        assert len(env_example[secret].encode()) >= 32
    accounts = access.BrokerSettings.from_env(env_example).accounts  # URL-safe, long enough, three different names
    for account in accounts.by_role().values():
        assert "guest" not in (account.user, account.password)
    assert len({account.password for account in accounts.by_role().values()}) == 3
    auth_config.Settings.from_env(env_example)
    worker_config.Settings.from_env(env_example)


def test_compose_has_every_service_each_with_a_healthcheck(compose):
    services = compose["services"]
    assert set(services) == INFRASTRUCTURE | set(APP_SERVICES) | ONE_SHOT | MONITORING
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no" and services[name]["healthcheck"] == {"disable": True}, name
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
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


def test_redis_keeps_the_pending_codes_in_an_append_only_file_on_a_named_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {"--appendonly": "yes", "--appendfsync": "everysec"}
    [volume] = redis["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/data" and name in compose["volumes"]


def test_mailpit_offers_smtp_on_1025_and_its_web_ui_on_8025(compose):
    published = {container for _, container in published_ports(compose["services"]["mailpit"])}
    assert published == {1025, 8025}
    assert compose["services"]["email-worker"]["environment"]["SMTP_HOST"] == "mailpit"
    assert compose["services"]["email-worker"]["environment"]["SMTP_PORT"] == "1025"


def test_each_service_logs_in_to_the_broker_with_its_own_account_and_holds_no_other_password(compose):
    assert "environment" not in compose["services"]["rabbitmq"], (
        "accounts come from the definitions, not a default user"
    )
    for service, role in BROKER_ROLES.items():
        environment = compose["services"][service]["environment"]
        match = BROKER_URL.fullmatch(environment["RABBITMQ_URL"])
        assert match and match[1] == match[2] == f"RABBITMQ_{role.upper()}", service
        # env_file hands .env whole to the container: every broker password is blanked there.
        assert {name: environment.get(name) for name in BROKER_PASSWORDS} == dict.fromkeys(BROKER_PASSWORDS, ""), (
            service
        )


def test_the_broker_loads_the_definitions_the_renderer_writes(compose, dockerfile):
    services = compose["services"]
    renderer, rabbitmq = services["rabbitmq-definitions"], services["rabbitmq"]
    assert rabbitmq["depends_on"] == {"rabbitmq-definitions": {"condition": "service_completed_successfully"}}
    assert renderer["env_file"] == [".env"] and "environment" not in renderer, "it needs every broker password"
    [written] = renderer["volumes"]
    volume, _, renderer_directory = written.partition(":")
    assert volume in compose["volumes"]
    assert renderer["command"] == ["python", "-m", "common.messaging.access", f"{renderer_directory}/definitions.json"]
    # The unprivileged image user can write there: the image has the directory, owned by it.
    assert any(
        item["instruction"] == "RUN" and "-o app" in item["value"] and item["value"].endswith(renderer_directory)
        for item in dockerfile.structure
    )
    mounts = {target: source for source, target, *_ in (entry.split(":") for entry in rabbitmq["volumes"])}
    assert mounts["/etc/rabbitmq/conf.d/20-verification.conf"] == "./docker/rabbitmq/rabbitmq.conf"
    definitions_directory = next(target for target, source in mounts.items() if source == volume)
    conf = dict(
        line.split(" = ", 1)
        for line in (ROOT / "docker" / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert conf["load_definitions"] == f"{definitions_directory}/definitions.json"
    assert conf["loopback_users.guest"] == "true"


def test_every_broker_account_compose_uses_is_in_the_definitions_with_its_role(compose, env_example):
    broker = access.BrokerSettings.from_env(env_example)
    document = access.definitions(broker.topology, broker.accounts, broker.account_events_exchange)
    users = {user["name"]: user for user in document["users"]}
    permissions = {entry["user"]: entry for entry in document["permissions"]}
    assert set(users) == set(permissions)
    for service, role in BROKER_ROLES.items():
        user = env_example[f"RABBITMQ_{role.upper()}_USER"]
        assert user in users, service
        assert users[user]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert env_example[f"RABBITMQ_{role.upper()}_PASSWORD"] not in json.dumps(document)
        assert (users[user]["tags"] == ["administrator"]) == (role == "admin")
        assert {permissions[user]["vhost"]} == {"/"}, "the vhost of every RABBITMQ_URL (%2F)"


def test_definitions_permissions_compile_and_fit_the_configured_queue_names(env_example):
    """Each service may configure, write and read its own queues and exchanges, none of the other's."""
    broker = access.BrokerSettings.from_env(env_example)
    routes = broker.topology
    creation, confirm, confirmed = routes.account_creation, routes.confirm_email_code, routes.account_confirmed
    notifications = routes.account_notifications
    assert notifications is not None
    to_worker, to_auth, replies = topology.TO_WORKER_EXCHANGE, topology.TO_AUTH_EXCHANGE, topology.REPLIES_EXCHANGE
    auth_retries, worker_retries = topology.AUTH_RETRIES_EXCHANGE, topology.WORKER_RETRIES_EXCHANGE
    events = env_example["ACCOUNT_EVENTS_EXCHANGE"]
    reply_queue = f"{topology.REPLY_QUEUE_PREFIX}{'0' * 32}"
    session_ends = f"{topology.SESSION_ENDS_QUEUE_PREFIX}{'0' * 32}"
    document = access.definitions(routes, broker.accounts, broker.account_events_exchange)
    granted = {entry["user"]: entry for entry in document["permissions"]}

    def ladder(queue: str, dead: bool = True) -> set[str]:
        return {queue, *routes.work_queue(queue).retry_queues, f"{queue}.retry.999s", *([f"{queue}.dead"] * dead)}

    delayed = {f"{confirmed}.delayed"}
    worker_queues = ladder(creation) | ladder(confirm) | ladder(notifications)
    worker_consumed = ladder(creation, False) | ladder(confirm, False) | ladder(notifications, False)
    every_name = {"amq.default", to_worker, to_auth, replies, auth_retries, worker_retries, events, reply_queue}
    every_name.add(session_ends)
    every_name |= worker_queues | ladder(confirmed) | delayed | {f"{creation}.delayed"}

    def allowed(role: str, kind: str) -> set[str]:
        pattern = re.compile(granted[env_example[f"RABBITMQ_{role.upper()}_USER"]][kind])
        return {name for name in every_name if pattern.fullmatch(name)}

    shared = {to_worker, to_auth, replies}
    mine = ladder(confirmed) | delayed
    assert allowed("auth", "configure") == shared | {auth_retries, events, reply_queue, session_ends} | mine
    assert allowed("auth", "write") == {to_worker, auth_retries, events, reply_queue, session_ends} | mine
    # Reading the events exchange lets auth bind its own session-end queue to it.
    own = {auth_retries, reply_queue, session_ends, events}
    assert allowed("auth", "read") == {to_auth, replies} | own | ladder(confirmed, False) | delayed
    assert allowed("worker", "configure") == shared | {worker_retries, events} | worker_queues
    assert allowed("worker", "write") == {to_auth, replies, worker_retries} | worker_queues
    # Reading the events exchange lets the worker bind its notification queue to it.
    assert allowed("worker", "read") == {to_worker, worker_retries, events} | worker_consumed
    [topic] = document["topic_permissions"]
    assert topic["exchange"] == events and topic["user"] == env_example["RABBITMQ_AUTH_USER"]
    assert re.fullmatch(topic["write"], "user.verified") and not re.fullmatch(topic["write"], "account.confirmed")
    # Auth binds its session-end queue with one routing key, and may bind no other.
    assert re.fullmatch(topic["read"], "user.sessions_revoked") and not re.fullmatch(topic["read"], "user.verified")


def test_every_variable_compose_interpolates_is_in_env_example(env_example):
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "compose.yaml").read_text()))
    assert used
    assert sorted(used - env_example.keys()) == []


def test_app_services_start_only_when_what_they_need_is_healthy(compose):
    needs = {"auth": {"mongodb", "rabbitmq", "redis"}, "email-worker": {"rabbitmq", "redis", "mailpit"}}
    for service, dependencies in needs.items():
        depends_on = dict(compose["services"][service]["depends_on"])
        # auth also waits for its database's migrations to have run (and ended).
        depends_on.pop("auth-migrate", None)
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
    assert "http://localhost:3000" in plan and "http://localhost:9090" in plan
    for target, command in {"down": "compose down", "logs": "compose logs", "ps": "compose ps"}.items():
        plan = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True)
        assert command in plan.stdout


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_imports() -> set[str]:
    """The top-level modules the services' code imports (the image's packages and its healthcheck)."""
    first_party = set(CODE_PACKAGES)
    found: set[str] = set()
    paths = [path for package in CODE_PACKAGES for path in (ROOT / package).rglob("*.py")]
    for path in [*paths, ROOT / "docker" / "healthcheck.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in first_party}


def test_the_image_requirements_hold_what_the_services_import_and_no_tool_of_development():
    """requirements/base.txt is what the image installs: every import of the services must be in it, and every
    requirement base.in names must be imported by the services or needed by one that is. An SMTP server for the
    tests (aiosmtpd), say, belongs in dev.in: the image would otherwise carry it for nothing."""
    pinned = {_distribution(line.split("==")[0]) for line in requirement_lines()}
    owners = importlib.metadata.packages_distributions()
    imported = {_distribution(owner) for name in _runtime_imports() for owner in owners.get(name, [name])}
    assert imported - pinned == set(), "imported by the services but not in requirements/base.txt"

    needed, todo = set(), list(imported)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            # Only with an extra (base.in names the extras it wants) or on another Python: not needed here.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_distribution(requirement.name))
    named = {
        _distribution(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0])
        for line in (ROOT / "requirements" / "base.in").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert named - needed == set(), "named in requirements/base.in, but the services neither import nor need it"


def test_compose_migrates_the_database_once_before_auth_starts(compose):
    services = compose["services"]
    assert services["auth-migrate"]["command"] == ["python", "-m", "auth_service", "migrate"]
    assert services["auth"]["depends_on"]["auth-migrate"] == {"condition": "service_completed_successfully"}
