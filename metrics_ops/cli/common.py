"""What every command shares: output options, building Settings from the given flags, error exits."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import click

from metrics_ops.exitcodes import ExitCode

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: environment variables that are not settings (settings: config.env_name), as the man pages describe them
VARIABLES_DOC = {
    "METRICS_CONFIG": "TOML file with settings, as --config",
    "NO_COLOR": "no colour in tables and progress bars",
    "XDG_STATE_HOME": "where it remembers when it last probed each URL: $XDG_STATE_HOME/metrics-ops/probes.json "
                      "(default ~/.local/state)",
}


def declares(*, exits: tuple[ExitCode, ...] = (), settings: tuple[str, ...] = (), env: tuple[str, ...] = ()):
    """A command's exit statuses and environment, declared on the command for its man page and the command
    reference (:func:`exit_statuses`, :func:`environment`): ``exits`` beyond 0 and 2 (every command: success,
    bad usage), ``settings`` it reads beyond those its options set ("*": all), ``env`` other variables
    (:data:`VARIABLES_DOC`).
    Put it above ``@click.command``."""
    unknown = [name for name in env if name not in VARIABLES_DOC]
    if unknown:
        raise LookupError(f"declares: no description of {unknown} in VARIABLES_DOC")  # a bug in the command

    def mark(cmd: click.Command) -> click.Command:
        cmd.declared = {"exits": frozenset(exits), "settings": tuple(settings), "env": tuple(env)}
        return cmd

    return mark


def exit_statuses(cmd: click.Command) -> list[ExitCode]:
    """The statuses ``cmd`` can exit with (a group: those of all its commands), in order."""
    codes = {ExitCode.OK, ExitCode.USAGE, *getattr(cmd, "declared", {}).get("exits", ())}
    for sub in getattr(cmd, "commands", {}).values():
        codes |= set(exit_statuses(sub))
    return sorted(codes)


def environment(cmd: click.Command) -> tuple[list[str], list[str]]:
    """(the settings ``cmd`` reads, in the model's order; the other variables it reads): what it declared, and
    every setting one of its options sets (an option's parameter name is the setting's name). A group: those of
    all its commands. A command that reads a setting also reads METRICS_CONFIG, the file settings come from."""
    from metrics_ops.config import Settings

    declared = getattr(cmd, "declared", {})
    names = set(declared.get("settings", ())) | {p.name for p in cmd.params if p.name in Settings.fields}
    if "*" in names:
        names = set(Settings.fields)
    other = set(declared.get("env", ()))
    for sub in getattr(cmd, "commands", {}).values():
        sub_names, sub_other = environment(sub)
        names |= set(sub_names)
        other |= set(sub_other)
    unknown = names - set(Settings.fields)
    if unknown:
        raise LookupError(f"{cmd.name} declares settings that do not exist: {sorted(unknown)}")
    if names:
        other.add("METRICS_CONFIG")
    return [n for n in Settings.fields if n in names], sorted(other)


def maintenance_lock_busy(exc) -> str:
    """What a busy maintenance lock (a :class:`metrics_ops.locks.LockBusy`) means to the user of a command."""
    return f"another maintenance pass holds {exc.path} (waited {exc.waited:g} s; see --lock-timeout)"


class Group(click.Group):
    """The command group. An alias (a command added under a second name, hidden from the list in --help) is
    still offered by shell completion, by the name it is typed as (bash, zsh and fish ask the group). click's
    usage errors, like the commands' own lines, fit the terminal (:class:`_Fitted`)."""

    def shell_complete(self, ctx: click.Context, incomplete: str):
        from click.shell_completion import CompletionItem

        items = super().shell_complete(ctx, incomplete)
        aliases = [CompletionItem(name, help=cmd.get_short_help_str()) for name, cmd in self.commands.items()
                   if cmd.hidden and name != cmd.name and name.startswith(incomplete)]
        # an alias's name is a word, so the list holds command names only (options come for "-" alone)
        return sorted(items + aliases, key=lambda item: item.value) if aliases else items

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            raise exc if isinstance(exc, Failure | _Fitted) else _Fitted(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            raise exc if isinstance(exc, Failure | _Fitted) else _Fitted(exc) from None


class DataDirPath(click.Path):
    """--data-dir: shown and completed as a directory, but not checked by click: a path that is a file gets the
    commands' own one-line message naming where the setting came from (:func:`data_dir_problem`), not click's
    usage block."""

    def __init__(self):
        super().__init__(file_okay=False)

    def convert(self, value, param, ctx):
        return value


def data_dir_problem(s, can_create: bool | None = None) -> str | None:
    """Why the data directory of settings ``s`` cannot be used by a command that reads or maintains it (None: it
    can), naming the directory and where the setting came from: under cron the working directory is $HOME.
    ``can_create``: True adds "add --create", False "rotate --create makes it", None no hint."""
    from metrics_ops.config import DEFAULT, origins_of
    from metrics_ops.layout import real_path
    from metrics_ops.store import unusable_dir

    why = unusable_dir(s.dir)
    if why is None:
        return None
    origin = origins_of(s)["dir"]
    where = real_path(s.dir)
    if origin.source == DEFAULT:
        said = f"the default ./data in the working directory {where.parent}; set METRICS_DIR or --data-dir"
    else:
        said = origin.describe(s.dir)
    hints = {False: "; rotate --create makes it", True: "; add --create to make it", None: ""}
    hint = "" if os.path.lexists(s.dir) or why.startswith("cannot") else hints[can_create]
    return f"data directory {where} {why} ({said}){hint}"


def existing_store(s):
    """The store of ``s``'s data directory, which must exist: else exit 1 with :func:`data_dir_problem`'s line."""
    from metrics_ops.store import Store

    problem = data_dir_problem(s)
    if problem is not None:
        raise Failure(problem)
    return Store.from_settings(s)


def render_outcome(out, result, failed: bool = False) -> None:
    """A pass's or forget's result: its table or JSON document, then exit 1 when an action failed (or
    ``failed``: something around the pass, such as writing its status file)."""
    from metrics_ops.render import render_pass

    render_pass(out, result)
    if not result.ok or failed:
        raise click.exceptions.Exit(ExitCode.FAILURE)


class Failure(click.ClickException):
    """An expected failure: one line per problem on stderr, then the given exit status."""

    def __init__(self, lines: list[str] | str, exit_code: int = ExitCode.FAILURE):
        lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(lines))
        self.lines = lines
        self.exit_code = int(exit_code)

    def show(self, file=None) -> None:
        from metrics_ops.terminal import PREFIX, fit, width_of

        err = sys.stderr if file is None else file  # click.get_text_stream is deprecated (gone in click 9)
        for line in self.lines:
            click.echo(fit(PREFIX + line, width_of(err)), file=err)  # wrapped on a terminal, one line piped


class _Fitted(click.ClickException):
    """click's own error (bad usage), shown as click shows it, each line wrapped to the terminal (one line piped)."""

    def __init__(self, error: click.ClickException):
        super().__init__(error.message)
        self.error, self.exit_code = error, error.exit_code

    def show(self, file=None) -> None:
        import io

        from metrics_ops.terminal import fit, width_of

        err = sys.stderr if file is None else file
        text = io.StringIO()
        self.error.show(file=text)
        for line in text.getvalue().splitlines():
            click.echo(fit(line, width_of(err)), file=err)


@dataclass
class Invocation:
    """What this run of metrics-ops was given for every command: the group's options, which may also follow the
    command name (after wins). Commands receive it through :data:`pass_invocation`, and ask it for their
    settings and their output."""

    config: str | None = None
    data_dir: str | None = None
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    config_spelled: str = "--config"  # or METRICS_CONFIG: how the config file was named, for its messages

    def settings(self, **flags):
        """Settings from every layer; ``flags`` are this command's options by setting name (None = not given).
        An invalid value: exit 2 with one line per problem, naming the option as this command spells it."""
        from metrics_ops.config import ConfigError, load_settings

        ctx = click.get_current_context()
        given = {k: v for k, v in flags.items() if v is not None}
        if self.data_dir is not None:
            given.setdefault("dir", self.data_dir)
        try:
            return load_settings(given, config_file=self.config, config_spelled=self.config_spelled,
                                 spelled={name: option_for(ctx, name) for name in given})
        except ConfigError as exc:
            raise Failure(exc.lines, ExitCode.USAGE) from None

    def output(self):
        from metrics_ops.render import Output

        return Output(json=self.json, quiet=self.quiet, verbose=self.verbose)


#: hands the command the :class:`Invocation` (click's make_pass_decorator: the group made it, or a new one)
pass_invocation = click.make_pass_decorator(Invocation, ensure=True)


def complete_zone(ctx, param, incomplete: str):
    """--tz completion: IANA zone names (zoneinfo is imported only when a completion is asked for)."""
    from zoneinfo import available_timezones

    return sorted(z for z in available_timezones() if z.startswith(incomplete))


def _given(ctx: click.Context, param: click.Parameter, value):
    """A group option given after the command: it lands in the invocation where the group's value lives (after
    the command wins; -v counts add up)."""
    if value:  # None, False, 0: not given here
        invocation = ctx.ensure_object(Invocation)
        setattr(invocation, param.name, invocation.verbose + value if param.name == "verbose" else value)
        if param.name == "config":
            invocation.config_spelled = "--config"
    return value


def output_options(fn):
    """--json / -q / -v, accepted before or after the command name (either place counts)."""
    fn = click.option("json", "--json", is_flag=True, default=None, expose_value=False, callback=_given,
                      help="Print one JSON document.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, default=None, expose_value=False, callback=_given,
                      help="Print nothing on success.")(fn)
    fn = click.option("-v", "--verbose", count=True, expose_value=False, callback=_given,
                      help="Say more (repeat for more).")(fn)
    return fn


def settings_options(fn):
    """--config / --data-dir, accepted before or after the command name; after the command wins."""
    fn = click.option("--data-dir", "data_dir", type=DataDirPath(), default=None,
                      expose_value=False, callback=_given, help="Data directory (env METRICS_DIR).")(fn)
    fn = click.option("--config", type=click.Path(), metavar="FILE", default=None, expose_value=False,
                      callback=_given, help="TOML file with settings (env METRICS_CONFIG).")(fn)
    return fn


def shared_options(fn):
    """Every option of the group, also after the command name: --config, --data-dir, --json, -q, -v."""
    return settings_options(output_options(fn))


def option_for(ctx: click.Context, setting: str) -> str:
    """The option that sets ``setting`` (its parameter name is the setting's name), as the command spells it:
    this command's own options first, then the group's (``--data-dir`` sets ``dir``)."""
    c: click.Context | None = ctx
    while c is not None:
        for param in c.command.params:
            if isinstance(param, click.Option) and param.name == setting:
                return next((o for o in param.opts if o.startswith("--")), param.opts[0])
        c = c.parent
    raise LookupError(f"{ctx.command_path} has no option named {setting!r}")  # a bug in the command, not input


#: the days --since and --until accept: nothing is stored before the Unix epoch, and the calendar ends in 9999
FIRST_DAY = "1970-01-01"
LAST_DAY = "9999-12-31"


def range_options(fn):
    """--since / --until: a day range in METRICS_TZ (both commands that read the data back)."""
    fn = click.option("--until", default=None, metavar="DAY",
                      help="Last day, YYYY-MM-DD, today, yesterday or Nd (N days ago); default today.")(fn)
    return click.option("--since", default=None, metavar="DAY",
                        help="First day, as --until; default 6d (the last 7 days).")(fn)


def day_range(since: str | None, until: str | None, today, default_days: int = 7):
    """(first day, last day) from --since/--until as given; today is the caller's today in METRICS_TZ. A day
    outside FIRST_DAY .. LAST_DAY (``--since 1000000d``, ``--until 0001-01-03``) is one line and exit 2."""
    from datetime import date, timedelta

    first_day, last_day = date.fromisoformat(FIRST_DAY), date.fromisoformat(LAST_DAY)

    def day(option: str, text: str) -> date:
        t = text.strip().lower()
        if t in ("today", "yesterday"):
            found = today - timedelta(days=0 if t == "today" else 1)
        elif t.endswith("d") and t[:-1].isascii() and t[:-1].isdigit():
            ago = int(t[:-1]) if len(t) < 12 else None  # int() refuses thousands of digits
            if ago is None or ago > (today - first_day).days:
                raise Failure(f"{option} {text}: that is before {FIRST_DAY}; want a day from {FIRST_DAY} to "
                              f"{LAST_DAY}", ExitCode.USAGE)
            found = today - timedelta(days=ago)
        else:
            try:
                found = date.fromisoformat(t)
            except ValueError:
                raise Failure(f"{option} {text}: want a day as YYYY-MM-DD, today, yesterday or Nd (N days ago)",
                              ExitCode.USAGE) from None
        if not first_day <= found <= last_day:
            raise Failure(f"{option} {text}: want a day from {FIRST_DAY} to {LAST_DAY}", ExitCode.USAGE)
        return found

    last = today if until is None else day("--until", until)
    if since is not None:
        first = day("--since", since)
    else:  # the default span, cut at the first day there can be data for
        first = last - timedelta(days=min(default_days - 1, (last - first_day).days))
    if first > last:
        raise Failure(f"--since {first} is after --until {last}", ExitCode.USAGE)
    return first, last


def archive_options(fn):
    """--host / --no-archive: which hosts a reading command reads, and whether the archive is read at all."""
    fn = click.option("--no-archive", is_flag=True,
                      help="Read this host's local files only, even with archive_url set.")(fn)
    return click.option("--host", "hosts", multiple=True, metavar="HOST",
                        help="With archive_url: only these hosts' lines (repeat it, or a comma list; a host id as "
                             "METRICS_HOST_ID). Default: every host in the archive and this one.")(fn)


def reading_across(s, hosts: tuple[str, ...], no_archive: bool):
    """What --host/--no-archive and the settings ask to read: a :class:`metrics_ops.remote.Across`, or None for this
    host's local files. A bad --host, or another host without the archive, is exit 2."""
    from metrics_ops.remote import Across, parse_hosts

    try:
        picked = parse_hosts(hosts)
    except ValueError as exc:
        raise Failure(str(exc), ExitCode.USAGE) from None
    location = s.archive_location
    if location is None or no_archive:
        if picked is not None and picked != {s.host_id}:
            why = "--no-archive is given" if location is not None else "archive_url (METRICS_ARCHIVE_URL) is not set"
            raise Failure(f"--host {','.join(sorted(picked))}: only this host ({s.host_id}) can be read: {why}",
                          ExitCode.USAGE)
        return None
    return Across(location, s.host_id, picked)


def archive_failure(exc) -> Failure:
    """The one line for an archive that cannot be read: exit 2 when boto3 is missing, else 5 (nothing reported)."""
    from metrics_ops.objectstore import Boto3Missing

    if isinstance(exc, Boto3Missing):
        return Failure(str(exc), ExitCode.USAGE)
    return Failure(f"{exc}; nothing is reported (add --no-archive to read this host's local files only)",
                   ExitCode.UNREACHABLE)
