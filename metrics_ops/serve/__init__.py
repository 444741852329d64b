"""serve: the ingestion endpoint, one module per concern.

- :mod:`~metrics_ops.serve.routes`      the routes table: path, methods, handler, CORS rules
- :mod:`~metrics_ops.serve.app`         ``make_app(settings)``: the WSGI app and the route handlers
- :mod:`~metrics_ops.serve.request`     reading a request body within the limits; the CORS decision
- :mod:`~metrics_ops.serve.counters`    the counter names and what each one counts
- :mod:`~metrics_ops.serve.exposition`  the Prometheus text format
- :mod:`~metrics_ops.serve.shared`      the state file every worker shares: ring, counters, health
- :mod:`~metrics_ops.serve.runner`      start-up checks and the granian server (``metrics-ops serve``)
- :mod:`~metrics_ops.serve.handoff`     the settings the main process hands its workers, as it checked them
- :mod:`~metrics_ops.serve.worker`      what a worker process does as it starts
- :mod:`~metrics_ops.serve.wsgi`        the import target for any WSGI server: ``create_app()``

Importing the package imports none of them: ``make_app`` and ``run`` are loaded on first use.
"""

from __future__ import annotations

__all__ = ["make_app", "run"]


def __getattr__(name: str):
    if name == "make_app":
        from metrics_ops.serve.app import make_app

        return make_app
    if name == "run":
        from metrics_ops.serve.runner import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
