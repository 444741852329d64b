"""Shell completion whose scripts and answers belong to metrics-ops, not to the installed click.

click's own completion scripts change between its releases (8.4 and 8.5 ship different fish scripts that speak
different answer formats), so a script generated with one click and shipped in ``completions/`` stops matching
both the generator and the answers of another. Here the scripts (the templates below) and the answer format
(``format_completion``) are defined together, once; click provides only what it has had since 8.0: the
``ShellComplete`` base class that walks the command tree and ``add_completion_class`` to register it. The shipped
files are therefore the same whatever click version generated them, and they always agree with the answers.

The scripts follow click's (BSD-3-Clause, Pallets): bash and zsh as in click 8.0-8.5, fish with descriptions.
"""

from __future__ import annotations

import os

from click.shell_completion import CompletionItem, ShellComplete, add_completion_class, split_arg_string

_BASH = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response

    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD \
%(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=($value)
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

_ZSH = """\
#compdef %(prog_name)s

%(complete_func)s() {
    local -a completions
    local -a completions_with_descriptions
    local -a response
    (( ! $+commands[%(prog_name)s] )) && return 1

    response=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) \
%(complete_var)s=zsh_complete %(prog_name)s)}")

    for type key descr in ${response}; do
        if [[ "$type" == "plain" ]]; then
            if [[ "$descr" == "_" ]]; then
                completions+=("$key")
            else
                completions_with_descriptions+=("$key":"$descr")
            fi
        elif [[ "$type" == "dir" ]]; then
            _path_files -/
        elif [[ "$type" == "file" ]]; then
            _path_files -f
        fi
    done

    if [ -n "$completions_with_descriptions" ]; then
        _describe -V unsorted completions_with_descriptions -U
    fi

    if [ -n "$completions" ]; then
        compadd -U -V unsorted -a completions
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    # autoload from fpath, call function directly
    %(complete_func)s "$@"
else
    # eval/source/. command, register function for later
    compdef %(complete_func)s %(prog_name)s
fi
"""

_FISH = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        set -l metadata (string split -m 1 "," $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments \
"(%(complete_func)s)";
"""


def _words_and_incomplete() -> tuple[list[str], str]:
    """bash and zsh: the words before the cursor and the word being completed."""
    cwords = split_arg_string(os.environ["COMP_WORDS"])
    cword = int(os.environ["COMP_CWORD"])
    return cwords[1:cword], (cwords[cword] if cword < len(cwords) else "")


class BashComplete(ShellComplete):
    name = "bash"
    source_template = _BASH

    def get_completion_args(self) -> tuple[list[str], str]:
        return _words_and_incomplete()

    def format_completion(self, item: CompletionItem) -> str:
        return f"{item.type},{item.value}"


class ZshComplete(ShellComplete):
    name = "zsh"
    source_template = _ZSH

    def get_completion_args(self) -> tuple[list[str], str]:
        return _words_and_incomplete()

    def format_completion(self, item: CompletionItem) -> str:
        # _describe splits value from help at the first unescaped colon; compadd (no help) takes the value as is.
        help_ = " ".join((item.help or "").split()) or "_"
        value = item.value.replace(":", r"\:") if help_ != "_" else item.value
        return f"{item.type}\n{value}\n{help_}"


class FishComplete(ShellComplete):
    name = "fish"
    source_template = _FISH

    def get_completion_args(self) -> tuple[list[str], str]:
        cwords = split_arg_string(os.environ["COMP_WORDS"])
        incomplete = os.environ["COMP_CWORD"]
        if incomplete:
            incomplete = split_arg_string(incomplete)[0]
        args = cwords[1:]
        if incomplete and args and args[-1] == incomplete:  # fish puts the partial word in both
            args.pop()
        return args, incomplete

    def format_completion(self, item: CompletionItem) -> str:
        # one line per item; fish shows what follows a tab as the description
        help_ = " ".join((item.help or "").split())
        return f"{item.type},{item.value}" + (f"\t{help_}" if help_ else "")


CLASSES = {cls.name: cls for cls in (BashComplete, ZshComplete, FishComplete)}


def register() -> None:
    """Answer completion requests with these classes instead of click's (call before the command runs)."""
    for name, cls in CLASSES.items():
        add_completion_class(cls, name)


PROG = "metrics-ops"
ENV_VAR = "_METRICS_OPS_COMPLETE"  # the variable a shell sets to ask for completions (see metrics_ops.cli)


def completion_script(shell: str, command) -> str:
    """The completion script ``metrics-ops completion SHELL`` prints (and ``completions/`` ships) for the click
    ``command`` tree (passed in: this module does not import the CLI it completes)."""
    if shell not in CLASSES:
        raise ValueError(f"no completion for {shell}")
    return CLASSES[shell](command, {}, PROG, ENV_VAR).source()
