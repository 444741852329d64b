"""The Prometheus text format (version 0.0.4) of serve's counters and ring, apart from routing (as
prometheus_client's ``generate_latest`` is apart from its ``make_wsgi_app``)."""

from __future__ import annotations

from collections.abc import Mapping

from metrics_ops.serve.counters import COUNTERS, HELP, REJECTED_HELP

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _metric_name(counter: str) -> str:
    return "metrics_ops_requests_total" if counter == "requests" else f"metrics_ops_events_{counter}_total"


def generate_latest(counters: Mapping[str, int], ring_events: int, ring_capacity: int) -> bytes:
    """Every counter (the ``rejected_*`` ones as one metric with a ``reason`` label) and the ring's gauges."""
    lines = []
    for name in COUNTERS:
        if not name.startswith("rejected_"):
            metric = _metric_name(name)
            lines += [f"# HELP {metric} {HELP[name]}", f"# TYPE {metric} counter", f"{metric} {counters[name]}"]
    lines += [f"# HELP metrics_ops_events_rejected_total {REJECTED_HELP}",
              "# TYPE metrics_ops_events_rejected_total counter"]
    lines += [f'metrics_ops_events_rejected_total{{reason="{name[9:]}"}} {counters[name]}'
              for name in COUNTERS if name.startswith("rejected_")]
    lines += ["# HELP metrics_ops_ring_events Events held in the debug ring.",
              "# TYPE metrics_ops_ring_events gauge", f"metrics_ops_ring_events {ring_events}",
              "# HELP metrics_ops_ring_capacity Capacity of the debug ring.",
              "# TYPE metrics_ops_ring_capacity gauge", f"metrics_ops_ring_capacity {ring_capacity}"]
    return ("\n".join(lines) + "\n").encode()
