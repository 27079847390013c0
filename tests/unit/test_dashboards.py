"""The compose stack's Prometheus configuration, alert rules and Grafana dashboard, checked without Docker.

promtool (Debian's prometheus package, installed by devtools/test_tools.sh)
checks the rules and the configuration and runs the rules' own unit tests
(docker/prometheus/alerts_test.yml); where it is missing the rules are parsed
here. tests/integration/test_dashboard_metrics.py checks that every metric
they name is exported by the services.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dashboards import DASHBOARDS, PROMETHEUS, ROOT, RULES, dashboard_expressions, metric_names

SEVERITIES = {"warning", "critical"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("no promtool here and devtools/test_tools.sh could not install it (not root?); rules parsed only")
    return found


def run(*command: str, cwd: Path = PROMETHEUS) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    tool = promtool()
    assert "SUCCESS: 8 rules found" in run(tool, "check", "rules", RULES.name)
    assert "SUCCESS" in run(tool, "test", "rules", "alerts_test.yml")


def test_promtool_accepts_the_configuration(tmp_path):
    tool = promtool()
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    # In the container the rules are mounted under /etc/prometheus; here they are beside the copy.
    shutil.copy(RULES, tmp_path / RULES.name)
    config["rule_files"] = [RULES.name]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    assert "SUCCESS" in run(tool, "check", "config", "prometheus.yml", cwd=tmp_path)


def test_each_rule_is_an_alert_with_a_severity_a_summary_and_a_metric_to_read():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "DeadLettersGrowing",
        "OutboxBacklogOlderThanAMinute",
        "NoMailWhileRegistrationsArrive",
        "HighErrorRatio",
        "SmtpFailing",
        "MailFailingOver",
        "MailTransportResting",
        "WebhookEndpointFailing",
    }
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")") and metric_names(rule["expr"]), rule["alert"]


def test_prometheus_scrapes_auth_and_finds_every_worker_by_dns():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    jobs = {
        job["job_name"]: job for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    }
    [auth] = jobs["auth"]["static_configs"]
    assert auth["targets"] == [f"auth:{compose['services']['auth']['environment']['AUTH_PORT']}"]
    [workers] = jobs["email-worker"]["dns_sd_configs"]
    assert workers["names"] == ["email-worker"] and workers["type"] == "A"
    assert str(workers["port"]) == compose["services"]["email-worker"]["environment"]["WORKER_METRICS_PORT"]
    mounted = {volume.split(":")[1] for volume in compose["services"]["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= mounted


def test_the_dashboard_reads_the_provisioned_datasource_and_shows_what_operators_asked_for():
    datasources = yaml.safe_load((ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    [datasource] = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    [path] = DASHBOARDS
    dashboard = json.loads(path.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert all(target["datasource"]["uid"] == datasource["uid"] for target in panel["targets"])
    read = set().union(*(metric_names(expression) for expression in dashboard_expressions().values()))
    asked_for = {
        "registrations": "http_requests_total",
        "201 -> mail latency": "code_email_delay_seconds_bucket",
        "codes verified / rejected / expired": "code_verdicts_total",
        "queue depth and dead letters": "queue_depth",
        "outbox backlog": "outbox_pending",
        "SMTP failures": "emails_failed_total",
        "mail per transport": "mail_transport_sent_total",
        "mail failing over": "mail_transport_failed_over_total",
        "breaker open": "mail_transport_open",
        "webhook deliveries by outcome": "webhook_deliveries_total",
        "webhook attempt latency": "webhook_attempt_seconds_bucket",
        "a failing webhook endpoint": "webhook_endpoint_longest_failing_seconds",
    }
    assert {need: metric for need, metric in asked_for.items() if metric not in read} == {}
