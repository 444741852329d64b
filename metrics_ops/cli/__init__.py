"""The ``metrics-ops`` command group. Each command is one module here plus one registration line below."""

from __future__ import annotations

import copy

import click

from metrics_ops import __version__
from metrics_ops.cli.common import CONTEXT_SETTINGS, DataDirPath, Group, Invocation


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="metrics-ops")
@click.option("--config", type=click.Path(), metavar="FILE", envvar="METRICS_CONFIG",
              help="TOML file with settings (keys as in `config show`); env METRICS_CONFIG.")
@click.option("--data-dir", "dir", type=DataDirPath(), help="Data directory (env METRICS_DIR).")
@click.option("json_", "--json", is_flag=True, help="Print one JSON document.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success (for cron).")
@click.option("-v", "--verbose", count=True, help="Say more (repeat for more).")
@click.pass_context
def cli(ctx, config, dir, json_, quiet, verbose):  # `dir`: the option is named after the setting it sets
    """Run a privacy-friendly analytics pipeline: ingest, keep files bounded, forget, prove sampling and limits.

    \b
    Examples:
      metrics-ops rotate --once           # one maintenance pass, for cron
      metrics-ops rotate --interval 300   # a loop, for a sidecar
      metrics-ops config show             # settings and their sources
    """
    # the config layer checks the file, naming it as given: --config or METRICS_CONFIG
    from_env = ctx.get_parameter_source("config") == click.core.ParameterSource.ENVIRONMENT
    ctx.obj = Invocation(config=config, data_dir=dir, json=json_, quiet=quiet, verbose=verbose,
                         config_spelled="METRICS_CONFIG" if from_env else "--config")


from metrics_ops.cli.client import client  # noqa: E402
from metrics_ops.cli.completion import completion  # noqa: E402
from metrics_ops.cli.config_cmd import config  # noqa: E402
from metrics_ops.cli.export import export  # noqa: E402
from metrics_ops.cli.forget import forget  # noqa: E402
from metrics_ops.cli.maintenance import archive, gzip_cmd, prune, rotate  # noqa: E402
from metrics_ops.cli.probe import ratelimit_probe  # noqa: E402
from metrics_ops.cli.report import report  # noqa: E402
from metrics_ops.cli.sampletest import sample_test  # noqa: E402
from metrics_ops.cli.serve import serve  # noqa: E402
from metrics_ops.cli.status import status  # noqa: E402

cli.add_command(serve)
cli.add_command(rotate)
cli.add_command(gzip_cmd)
cli.add_command(archive)
cli.add_command(prune)
cli.add_command(forget)
cli.add_command(report)
cli.add_command(export)
cli.add_command(config)
cli.add_command(sample_test)
cli.add_command(ratelimit_probe)
# The alias: the same command under a second name, hidden from the list (ratelimit-probe's help names it),
# offered by completion (common.Group).
_probe_alias = copy.copy(ratelimit_probe)
_probe_alias.hidden = True
cli.add_command(_probe_alias, "probe")
cli.add_command(client)
cli.add_command(completion)
cli.add_command(status)


def main() -> None:
    import os

    if os.environ.get("_METRICS_OPS_COMPLETE"):  # a shell asks for completions: answer in our scripts' format
        from metrics_ops.shell_completion import register

        register()
    try:
        cli(prog_name="metrics-ops")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("metrics_ops._"):
            raise
        # a source checkout run without building its C extensions (pip install -e . builds them)
        import sys

        from metrics_ops.exitcodes import ExitCode

        click.echo(f"metrics-ops: the C extension {exc.name} is not built: run pip install -e . in the checkout "
                   "(it needs gcc and Python's headers, python3-dev)", err=True)
        sys.exit(ExitCode.FAILURE)
