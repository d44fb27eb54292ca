"""The catalogue, the README's metric table and a live scrape agree; what realtime counts is exposed."""

from __future__ import annotations

import ast
import re

from metrics.catalogue import BY_SOURCE, FAMILIES, SOKETI
from tests.conftest import ROOT

from .conftest import PREFIX, scrape

README = ROOT / "README.md"
# Label names that may appear at all: each one's values come from a bounded set (docs/architecture.md,
# "Metrics").
BOUNDED_LABELS = {
    "app_id", "channel_type", "code", "reason", "method", "endpoint", "status", "kind", "direction",
    "event", "limiter", "result", "queue", "cache", "operation", "type", "version", "python_version",
}  # fmt: skip
# realtime.stats names that feed something other than a catalogue family of the same name.
COMPAT_ONLY = {"http_calls_received", "http_received_bytes", "http_transmitted_bytes"}


def readme_section() -> str:
    text = README.read_text()
    start, end = text.index("<!-- metrics:start -->"), text.index("<!-- metrics:end -->")
    assert text.rfind("## Monitoring", 0, start) != -1
    return text[start:end]


def readme_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """family (after the prefix) -> (type, labels), from the README's table rows."""
    rows = {}
    for line in readme_section().splitlines():
        match = re.match(r"\| `realtime_(\w+)` \| (counter|gauge|histogram) \| ([^|]+) \|", line)
        if match:
            labels = tuple(re.findall(r"`(\w+)`", match.group(3)))
            assert match.group(1) not in rows, f"{match.group(1)} documented twice"
            rows[match.group(1)] = (match.group(2), labels)
    return rows


def test_families_follow_the_rules() -> None:
    names = [family.name for family in FAMILIES]
    assert len(names) == len(set(names))
    for family in FAMILIES:
        assert set(family.labels) <= BOUNDED_LABELS, family.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        if family.type == "counter":
            assert family.name.endswith("_total")
        else:
            assert not family.name.endswith("_total")
        if family.type == "gauge":
            assert family.source is None, "levels are read from live state at scrape time"
        else:
            assert family.source, family.name
    assert len(SOKETI) == 10


def test_readme_documents_exactly_the_catalogue() -> None:
    assert readme_table() == {family.name: (family.type, family.labels) for family in FAMILIES}


def test_readme_lists_the_soketi_names() -> None:
    section = readme_section()
    for family in SOKETI:
        assert f"`soketi_{family.name}`" in section


def test_live_scrape_exposes_exactly_the_documented_families(server) -> None:
    exposition = scrape(server)
    ours = {name.removeprefix(PREFIX) for name in exposition.families if name.startswith(PREFIX)}
    documented = readme_table()
    # The parser names counters without their _total suffix.
    assert ours == {name.removesuffix("_total") for name in documented}
    for name, (kind, labels) in documented.items():
        family = exposition.families[PREFIX + name.removesuffix("_total")]
        assert family.type == kind, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(labels), (name, sample)


def _is_stats(node: ast.expr) -> bool:
    """``stats`` or ``<anything>.stats``: the runtime's counters, however they are reached."""
    if isinstance(node, ast.Name):
        return node.id == "stats"
    return isinstance(node, ast.Attribute) and node.attr == "stats"


def _stats_calls() -> list[tuple[str, str, int | None, str]]:
    """(method, name, label count or None when not a literal tuple, where) for every stats call."""
    calls = []
    for path in sorted((ROOT / "realtime").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and _is_stats(node.func.value)
                and node.func.attr in {"incr", "observe"}
            ):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert node.args and isinstance(node.args[0], ast.Constant), (
                    f"{where}: name must be a literal"
                )
                label_arg = 1 if node.func.attr == "incr" else 2
                labels = node.args[label_arg] if len(node.args) > label_arg else None
                if labels is None:
                    labels = next((k.value for k in node.keywords if k.arg == "labels"), None)
                literal = isinstance(labels, ast.Tuple) and not any(
                    isinstance(e, ast.Starred) for e in labels.elts
                )
                width = 0 if labels is None else len(labels.elts) if literal else None
                calls.append((node.func.attr, node.args[0].value, width, where))
    return calls


def test_everything_realtime_counts_is_exposed_with_the_right_labels() -> None:
    calls = _stats_calls()
    assert len(calls) > 30
    for method, name, width, where in calls:
        if name in COMPAT_ONLY:
            assert method == "incr" and width == 1, where
            continue
        assert name in BY_SOURCE, f"{where}: stats name {name!r} is in no catalogue family"
        family = BY_SOURCE[name]
        assert (family.type == "histogram") == (method == "observe"), where
        if width is not None:
            assert width == len(family.labels), (
                f"{where}: {name} counted with {width} labels, {family.labels}"
            )
