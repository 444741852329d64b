"""The import target for any WSGI server: the factory ``create_app()``, which builds the app from the environment.

    granian --interface wsgi --factory --workers 2 --blocking-threads 1 metrics_ops.serve.wsgi:create_app
    gunicorn -w 2 'metrics_ops.serve.wsgi:create_app()'

Settings come from the environment, .env and METRICS_CONFIG as for every command. All worker processes of one
server share the ring and counters through METRICS_STATE_FILE (default DIR/.metrics-ops.state). Importing this
module builds nothing; ``metrics_ops.serve.wsgi:app`` (and the older ``metrics_ops.wsgi:app``) still work for
servers without a factory form: the attribute is built on first access.
"""

from __future__ import annotations

import os
import signal

if os.environ.get("METRICS_SERVE_PARENT_PID"):  # (worker.PARENT_ENV, spelled out: nothing is imported yet)
    # A granian worker inherits the main process's SIGTERM handler, which only sets a flag in the main process's
    # copy of the server, until the worker installs its own after this module is loaded: a stop signal in that
    # window was swallowed and the server never exited. Until then, exiting is right: this worker has taken no
    # request yet. Done first, before the imports that make up most of a worker's start, and only in a worker
    # that `metrics-ops serve` started. (A forked worker has this handler from the moment it exists: see
    # serve/runner.py; this line covers the spawn start method.) A Python handler, not SIG_DFL: a signal that
    # arrived while the handler was being replaced runs the new handler instead of being dropped.
    def _exit_now(signum, frame):
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)


class StartupError(SystemExit):
    """The app cannot be built: the worker exits, its lines said on stderr; status 2 (a usage error) for
    invalid settings, 1 for anything else."""

    def __init__(self, lines: list[str], status: int = 2):
        import sys

        super().__init__(status)
        self.lines = lines
        from metrics_ops.terminal import note

        for line in lines:
            note(sys.stderr, line)


def create_app():
    """The WSGI app of the settings in the environment; in a serve worker, the settings its main process
    validated (nothing looked up again), and it also ends with its parent."""
    from metrics_ops.config import ConfigError, load_settings
    from metrics_ops.serve.app import make_app
    from metrics_ops.serve.handoff import settings_from_json
    from metrics_ops.serve.worker import SETTINGS_ENV, configure_logging, die_with_parent

    die_with_parent()
    try:
        if os.environ.get(SETTINGS_ENV) and os.environ.get("METRICS_SERVE_PARENT_PID"):
            settings = settings_from_json(os.environ[SETTINGS_ENV])
        else:
            config = os.environ.get("METRICS_CONFIG") or None
            settings = load_settings(config_file=config, config_spelled="METRICS_CONFIG")
    except ConfigError as exc:
        raise StartupError(exc.lines) from None
    configure_logging(settings.log_level)
    try:
        return make_app(settings)
    except OSError as exc:
        raise StartupError([f"cannot start a worker: {exc}"], 1) from None


def __getattr__(name: str):
    if name == "app":  # the non-factory form: built once, on first access
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
