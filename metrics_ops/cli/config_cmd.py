"""config show: the effective settings and where each value came from."""

from __future__ import annotations

import click

from metrics_ops.cli.common import CONTEXT_SETTINGS, declares, pass_invocation, shared_options


@click.group(context_settings=CONTEXT_SETTINGS)
def config():
    """Inspect the settings shared by every command.

    \b
    Example:
      metrics-ops config show
    """


@declares(settings=("*",), env=("NO_COLOR",))  # "*": every setting
@config.command("show")
@shared_options
@pass_invocation
def show(run):
    """Print every setting, its value and its source (default, TOML, .env, environment or flag).

    A secret (sample_key, any token) is never printed: only whether it is set, and where from.

    \b
    Examples:
      metrics-ops config show
      metrics-ops --config /etc/metrics-ops.toml config show --json
      METRICS_RETENTION=60 metrics-ops config show   # what the variable does
    """
    from metrics_ops.config import HIDDEN, Settings, env_name, origins_of, secret_fields
    from metrics_ops.origins import plain_value, printable

    out, s = run.output(), run.settings()
    origins, secrets = origins_of(s), secret_fields()
    values = {name: getattr(s, name) for name in Settings.fields}
    values["jsonl"] = s.link_path  # the paths the commands will use, not "unset" for a derived default
    values["state_file"] = s.state_path
    values["status_file"] = s.status_path
    for name in secrets:  # a secret is never printed: whether it is set, and where from
        values[name] = HIDDEN if plain_value(values[name]) not in (None, "", b"") else None
    if out.json:
        out.document({name: {"value": None if v is None else (str(v) if not isinstance(v, int | float) else v),
                             "source": origins[name].source, "env": env_name(name),
                             **({"file": origins[name].file} if origins[name].file else {}),
                             **({"secret": True, "set": v is not None} if name in secrets else {})}
                      for name, v in values.items()})
        return
    if out.quiet:
        return
    # printable: a line break or escape sequence in a value or file name must not break its row or reach the
    # terminal as is
    rows = [(name, ("set " if v is not None and name in secrets else "") + ("unset" if v is None else
                                                                             printable(str(v))),
             printable(origins[name].source + (f" ({origins[name].file})" if origins[name].file else "")),
             env_name(name))
            for name, v in values.items()]
    out.table("effective settings", ("setting", "value", "source", "environment"), rows,
              whole=("setting", "environment"),
              optional={"environment": "environment variables: METRICS_ and the setting in capitals"})
