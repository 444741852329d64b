"""How serve's main process hands its settings to its workers: every effective value and its origin as JSON in
one environment variable (:data:`metrics_ops.serve.worker.SETTINGS_ENV`). A worker looks nothing up again (no
environment, .env or TOML file), so it cannot resolve a path differently from the process that checked it: the
link given by METRICS_JSONL stays the link, never the data file it points at."""

from __future__ import annotations

from metrics_ops.config import FIELDS, Origin, Settings, origins_of
from metrics_ops.origins import plain_value


def settings_to_json(settings: Settings) -> str:
    """Every effective value and its origin, for :func:`settings_from_json` in a process that must run with
    exactly these settings (serve's workers): nothing is looked up again, so nothing can resolve differently."""
    import json

    origins = origins_of(settings)
    return json.dumps({
        "values": {name: plain_value(getattr(settings, name)) for name in FIELDS},
        "origins": {name: [o.source, o.spelled, o.raw, o.file] for name, o in origins.items()},
    }, default=str)


def settings_from_json(text: str) -> Settings:
    """The settings :func:`settings_to_json` wrote; no environment, .env or TOML file is read."""
    import json

    doc = json.loads(text)
    origins = {name: Origin(*o) for name, o in doc["origins"].items()}
    # every field given, nothing read from anywhere; a ConfigError if the file system changed under the main
    # process's checks
    return Settings(_origins=origins, **doc["values"])
