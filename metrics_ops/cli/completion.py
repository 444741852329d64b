"""completion: print the shell completion script (as gh and kubectl do)."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


@click.command(short_help="Print the shell completion script (bash, zsh, fish).")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell):
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    Examples:
      source <(metrics-ops completion bash)     # this shell
      metrics-ops completion bash > /etc/bash_completion.d/metrics-ops
      metrics-ops completion zsh > "${fpath[1]}/_metrics-ops"
      metrics-ops completion fish > ~/.config/fish/completions/metrics-ops.fish
    """
    from metrics_ops.shell_completion import completion_script

    click.echo(completion_script(shell, click.get_current_context().find_root().command), nl=False)
