"""``monitoring/grafana/headwater.json``: importable, and every query names metrics (and labels) headwater exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from headwater.monitoring.metrics import BY_NAME, METRICS, SchedulerMetrics, StreamExporter, new_registry
from headwater.monitoring.prometheus import InstancesCollector
from headwater.monitoring.status import status_path, write_status
from headwater.settings import Settings

DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "headwater.json"
METRIC = re.compile(r"\b(headwater_[a-z0-9_]+)\b")
# A selector right after a metric name: headwater_x{app=~"$app",state="success"}
SELECTOR = re.compile(r"\b(headwater_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, and the label_values() queries of the variables."""
    out = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"${var['name']}", var["definition"]))
    return out


def _spec_of(sample: str) -> tuple[str, str] | None:
    """The catalogue name and suffix of a sample name, if it is a valid sample of a headwater metric."""
    for spec in METRICS:
        for suffix in SUFFIXES[spec.kind]:
            if sample == spec.name + suffix:
                return spec.name, suffix
    return None


def _exposed_samples(home: Path) -> set[str]:
    """Sample names a scheduler, a stream app and the web server really expose once each metric has a value."""
    registry = new_registry(process=False)
    settings = Settings.from_env({"HEADWATER_HOME": str(home)})
    write_status(status_path(settings, "app", "box-1"), {"format": 1, "app": "app", "state": "stopped"})
    registry.register(InstancesCollector(settings))
    sched = SchedulerMetrics(registry)
    sched.try_finished("d", "t", "success", 1.0)
    sched.step_done(0.01, queued=1, running=2)

    class _Parse:
        parsed = [type("R", (), {"duration": 0.1, "errors": [type("E", (), {"kind": "import"})()]})()]

    sched.parsed(_Parse())
    stream = StreamExporter(registry, "app", quality=lambda: ({("not_null", "x"): 1}, {("psi", "x"): 1}))
    stream.batch({"in": 3}, {"out": 2}, {"in": 1}, 0.01)
    stream.set_lag({("in", 0): 4})
    stream.set_models({"predict": ("m@champion", "m:1")})
    stream.predicted("predict", "m:1", [1.0, 2e5])
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] >= 36 and dash["uid"] and dash["title"]
    assert dash["id"] is None  # import creates it
    (ds_var,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert ds_var["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert target["expr"].count("{") == target["expr"].count("}"), target["expr"]


def test_every_query_names_a_metric_headwater_exports_with_its_labels(tmp_path: Path) -> None:
    exposed = _exposed_samples(tmp_path)
    used: set[str] = set()
    for title, expr in _queries(_dashboard()):
        names = METRIC.findall(expr)
        assert names, f"{title}: no headwater metric in {expr!r}"
        for name in names:
            found = _spec_of(name)
            assert found is not None, f"{title}: {name} is not a sample of any metric in METRICS"
            assert name in exposed, f"{title}: {name} is in the catalogue but no process exposes it"
            used.add(found[0])
        for name, selector in SELECTOR.findall(expr):
            spec_name, suffix = _spec_of(name) or ("", "")
            labels = set(BY_NAME[spec_name].labels) | ({"le"} if suffix == "_bucket" else set())
            for matcher in filter(None, (m.strip() for m in selector.split(","))):
                label = re.split(r"[=!~]", matcher, maxsplit=1)[0].strip()
                assert label in labels, f"{title}: {name} has no label {label!r}"
        grouped = {lab.strip() for group in GROUPING.findall(expr) for lab in group.split(",")}
        labels_of_expr = {lab for n in names for lab in BY_NAME[(_spec_of(n) or ("", ""))[0]].labels}
        assert grouped <= labels_of_expr | {"le"}, f"{title}: groups by {grouped - labels_of_expr}"
    # The dashboard shows every metric of the issue (model info, predictions, checks, drift, lag...).
    assert used == {m.name for m in METRICS}


@pytest.mark.parametrize("bad", ["headwater_stream_records_in", "headwater_task_tries_bucket", "headwater_nope_total"])
def test_the_name_check_refuses_names_that_are_not_exposed(bad: str) -> None:
    # A counter without _total, a histogram suffix on a counter, an unknown metric: all caught.
    assert _spec_of(bad) is None


def promql(expr: str) -> str:
    """A dashboard query as plain PromQL: Grafana's variables replaced by values Prometheus accepts."""
    return expr.replace("$__rate_interval", "1m").replace("$dag", ".*").replace("$app", ".*")


def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    """Prometheus' own parser checks the syntax (promtool: Debian's prometheus package)."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    queries = [(title, expr) for title, expr in _queries(_dashboard()) if not title.startswith("$")]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": promql(expr)} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(queries)} rules found" in out.stdout + out.stderr

    path.write_text(json.dumps({"groups": [{"name": "bad", "rules": [
        {"record": "bad:query", "expr": "sum by (le (rate(headwater_task_tries_total[1m]))"}]}]}))
    bad = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0  # the check can fail
