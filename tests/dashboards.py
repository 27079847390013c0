"""The PromQL of the alert rules and of the Grafana dashboard, and the metric names it reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "docker" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
DASHBOARDS = sorted((ROOT / "docker" / "grafana" / "dashboards").glob("*.json"))

KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")


def rule_expressions() -> dict[str, str]:
    """Each alert's name and expression."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """Each panel target's expression, named by dashboard, panel and target."""
    found = {}
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found[f"{path.stem}: {panel['title']} ({target['refId']})"] = target["expr"]
    return found


def metric_names(expression: str) -> set[str]:
    """The metrics an expression reads: its identifiers that are neither functions, keywords nor labels."""
    text = _STRINGS.sub('""', expression)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def selector_labels(expression: str) -> dict[str, set[str]]:
    """For each metric selected with matchers (``name{label="..."}``), the label names it matches on."""
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(_STRINGS.sub(lambda m: m.group().replace("}", ""), expression)):
        labels = {part.split("=")[0].strip(" !~") for part in matchers.split(",") if part.strip()}
        found.setdefault(name, set()).update(labels)
    return found


def grouping_labels(expression: str) -> set[str]:
    """The labels an expression aggregates or matches by (``sum by (queue)``, ``on (le)``)."""
    return {label.strip() for group in _GROUPING.findall(expression) for label in group.split(",") if label.strip()}
