"""What every command shares: output options, building Settings from the given flags, error exits."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from metrics_ops.exitcodes import ExitCode

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Failure(click.ClickException):
    """An expected failure: one line per problem on stderr, then the given exit status."""

    def __init__(self, lines: list[str] | str, exit_code: int = ExitCode.FAILURE):
        lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(lines))
        self.lines = lines
        self.exit_code = int(exit_code)

    def show(self, file=None) -> None:
        err = sys.stderr if file is None else file  # click.get_text_stream is deprecated (gone in click 9)
        for line in self.lines:
            click.echo(f"metrics-ops: {line}", file=err)


@dataclass
class State:
    """The group's options, handed to every command through ctx.obj."""

    config: str | None = None
    data_dir: str | None = None
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def complete_zone(ctx, param, incomplete: str):
    """--tz completion: IANA zone names (zoneinfo is imported only when a completion is asked for)."""
    from zoneinfo import available_timezones

    return sorted(z for z in available_timezones() if z.startswith(incomplete))


def output_options(fn):
    """--json / -q / -v, accepted before or after the command name (either place counts)."""
    fn = click.option("json_", "--json", is_flag=True, default=None, help="Print one JSON document.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, default=None, help="Print nothing on success.")(fn)
    fn = click.option("-v", "--verbose", count=True, help="Say more (repeat for more).")(fn)
    return fn


def output(ctx: click.Context, json_: bool | None = None, quiet: bool | None = None, verbose: int = 0):
    from metrics_ops.render import Output

    state: State = ctx.find_object(State) or State()
    return Output(json=bool(json_ or state.json), quiet=bool(quiet or state.quiet),
                  verbose=(verbose or 0) + state.verbose)


def settings(ctx: click.Context, **flags):
    """Settings from every layer; ``flags`` are this command's options (None = not given)."""
    from metrics_ops.config import ConfigError, load_settings

    state: State = ctx.find_object(State) or State()
    given = {k: v for k, v in flags.items() if v is not None}
    if state.data_dir is not None:
        given.setdefault("dir", state.data_dir)
    try:
        return load_settings(given, config_file=state.config)
    except ConfigError as exc:
        raise Failure(exc.lines, ExitCode.USAGE) from None
