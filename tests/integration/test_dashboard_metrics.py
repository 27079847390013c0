"""Every metric an alert rule or a dashboard panel reads is exported by the services, with the labels it uses.

Both services run as real processes; after one registration their /metrics
are scraped, and each name in docker/prometheus/alerts.yml and
docker/grafana/dashboards/*.json must be among the samples, with every label it
matches on or aggregates by.
"""

from __future__ import annotations

from devtools.stack import http_json
from tests.dashboards import dashboard_expressions, grouping_labels, metric_names, rule_expressions, selector_labels
from tests.observability import metric_samples

PASSWORD = "correct horse battery staple"


def exported(url: str) -> dict[str, set[str]]:
    """Each sample name at ``url`` with the label names it carries."""
    status, _, text = http_json("GET", url)
    assert status == 200
    found: dict[str, set[str]] = {}
    for name, labels in metric_samples(text):
        found.setdefault(name, set()).update(label for label, _ in labels)
    return found


def test_every_metric_of_the_rules_and_the_dashboard_is_exported_with_its_labels(stack, unique_email):
    email = unique_email("dashboard")
    status, _, _ = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201
    stack.sink.wait_for(email)
    metrics = exported(stack.base_url + "/metrics")
    for name, labels in exported(stack.worker_status_url + "/metrics").items():
        metrics.setdefault(name, set()).update(labels)

    expressions = {**rule_expressions(), **dashboard_expressions()}
    missing = {where: sorted(metric_names(expr) - metrics.keys()) for where, expr in expressions.items()}
    assert {where: names for where, names in missing.items() if names} == {}

    unknown_labels = {}
    for where, expression in expressions.items():
        for name, labels in selector_labels(expression).items():
            if labels - metrics[name]:
                unknown_labels[f"{where}: {name}"] = sorted(labels - metrics[name])
        offered = set().union(*(metrics[name] for name in metric_names(expression)))
        if grouping_labels(expression) - offered:
            unknown_labels[f"{where}: grouped by"] = sorted(grouping_labels(expression) - offered)
    assert unknown_labels == {}
