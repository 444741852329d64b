"""Meta-tests in the style of sqlite-utils' test_docs.py: generated files are fresh, every command and option
is documented in the README and the man pages, completions work in a real bash, man pages are clean."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from metrics_ops.cli import cli
from metrics_ops.exitcodes import EXIT_STATUS_DOC, ExitCode

from .helpers import console_script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import docgen  # noqa: E402  (tools/docgen.py: a development tool, not part of the package)

README = (ROOT / "README.md").read_text()


def test_generated_files_are_fresh():
    stale = [str(p.relative_to(ROOT)) for p, text in docgen.outputs().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"regenerate with `python tools/docgen.py`: {stale}"
    known = set(docgen.outputs())
    strays = [p.name for folder in ("man", "completions") for p in (ROOT / folder).iterdir() if p not in known]
    assert not strays


def test_man_pages_do_not_depend_on_the_day_they_were_built(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01
    full, cmd = docgen.commands()[1]
    assert '"2026-01-01"' in docgen.man_page(full, cmd).splitlines()[1]
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    from metrics_ops import RELEASE_DATE

    assert f'"{RELEASE_DATE}"' in docgen.man_page(full, cmd).splitlines()[1]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (.ci/run installs groff-base)")
@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "man").glob("*.1")))
def test_man_page_has_no_groff_warnings(page):
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(ROOT / "man" / page)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = (ROOT / "man" / page).read_text()
    for section in ("NAME", "SYNOPSIS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f".SH {section}" in text


def _man_text(page: str) -> str:
    return (ROOT / "man" / page).read_text().replace("\\-", "-").replace("\\e", "\\")


@pytest.mark.parametrize("full, cmd", docgen.commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_and_option_is_in_the_readme_and_its_man_page(full, cmd):
    page = _man_text(full.replace(" ", "-") + ".1")
    assert f"### `{full}`" in README
    section = README.split(f"### `{full}`", 1)[1].split("### ", 1)[0]
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:  # hidden: kept for old scripts only
            assert param.opts[0] in page, (full, param.opts[0])
            assert f"`{param.opts[0]}" in section or f", {param.opts[0]}" in section, (full, param.opts[0])


def test_exit_statuses_are_documented_once_in_code_and_shown_everywhere():
    table = README.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    for code in ExitCode:
        assert f"\n| {int(code)} |" in table, code
        assert code in EXIT_STATUS_DOC
    page = _man_text("metrics-ops-rotate.1")
    for code, text in EXIT_STATUS_DOC.items():
        assert f".B {int(code)}\n{text}" in page


def test_completion_command_prints_the_shipped_scripts(run):
    for shell in ("bash", "zsh", "fish"):
        r = run("completion", shell)
        assert r.exit_code == 0
        shipped = (ROOT / "completions" / f"metrics-ops.{shell}").read_text()
        assert shipped.split("\n", 1)[1] == r.stdout


def _bash_complete(words: str) -> list[str]:
    script = ROOT / "completions" / "metrics-ops.bash"
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    code = (f"source {script}\nCOMP_WORDS=({words})\n" + ("COMP_WORDS+=('')\n" if words.endswith(" ") else "")
            + f"COMP_CWORD={cword}\n_metrics_ops_completion metrics-ops\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    env = {**os.environ, "PATH": f"{Path(exe).parent}:{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_for_real():
    assert _bash_complete("metrics-ops ro") == ["rotate"]
    assert set(_bash_complete("metrics-ops s")) == {"sample-test", "serve", "status"}
    assert "Europe/Berlin" in _bash_complete("metrics-ops rotate --tz Europe/Ber")
    assert _bash_complete("metrics-ops completion z") == ["zsh"]
    assert _bash_complete("metrics-ops sample-test --mode v") == ["visitor"]


#: an interactive shell without the user's configuration, and how it loads the shipped script
INTERACTIVE = {
    "bash": (["bash", "--norc", "--noprofile", "-i"], "source {script}\n"),
    "zsh": (["zsh", "-f", "-i"], "bindkey -e; autoload -U compinit; compinit -u; source {script}\n"),
    "fish": (["fish", "--no-config", "-i"], "source {script}\n"),
}


def _tab_in_a_real_shell(shell: str, lines: list[str], tmp_path: Path) -> list[str]:
    """Type each of ``lines`` and TAB into an interactive ``shell`` on a pty (its controlling terminal) with the
    shipped script loaded, as an operator does; return each command line as the completion left it (the line
    is turned into ``echo LINE > FILE`` with ^A and ^E, then run)."""
    import fcntl
    import pty
    import select
    import termios
    import time

    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    argv, setup = INTERACTIVE[shell]
    outs = [tmp_path / f"{shell}-{i}" for i in range(len(lines))]
    keys = setup.format(script=ROOT / "completions" / f"metrics-ops.{shell}") + "".join(
        f"{line}\t\x01echo \x05 > {out}\n" for line, out in zip(lines, outs, strict=True)) + "exit\n"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{Path(exe).parent}:/usr/bin:/bin", "HOME": str(home), "TERM": "xterm", "LANG": "C.UTF-8"}

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                            preexec_fn=controlling_tty, cwd=tmp_path)
    os.close(slave)
    os.write(master, keys.encode())
    screen, deadline = b"", time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # read on, or the shell blocks on a full pty
        if select.select([master], [], [], 0.2)[0]:
            try:
                screen += os.read(master, 65536)
            except OSError:
                break
    os.close(master)
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    assert all(out.exists() for out in outs), f"{shell} did not run the lines: {screen[-2000:]!r}"
    return [out.read_text().strip() for out in outs]


@pytest.mark.parametrize("shell", sorted(INTERACTIVE))
def test_the_probe_alias_completes_in_a_real_bash_zsh_and_fish(shell, tmp_path):
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} (apt-get install {shell}; .ci/run installs it)")
    assert _tab_in_a_real_shell(shell, ["metrics-ops prob", "metrics-ops probe --expect-r", "metrics-ops ratel"],
                                tmp_path) == ["metrics-ops probe", "metrics-ops probe --expect-rate",
                                              "metrics-ops ratelimit-probe"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_answers_offer_the_alias_next_to_the_command_it_stands_for(shell):
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    words = ("metrics-ops pr", "pr") if shell == "fish" else ("metrics-ops pr", "1")
    env = {**os.environ, "_METRICS_OPS_COMPLETE": f"{shell}_complete", "COMP_WORDS": words[0], "COMP_CWORD": words[1]}
    r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    helps = {name: cli.commands[name].get_short_help_str() for name in ("probe", "prune")}
    assert r.stdout.splitlines() == {
        "bash": ["plain,probe", "plain,prune"],
        "zsh": ["plain", "probe", helps["probe"], "plain", "prune", helps["prune"]],
        "fish": [f"plain,{name}\t{text}" for name, text in helps.items()],
    }[shell]


def test_help_and_completion_do_not_import_the_heavy_modules():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom metrics_ops.cli import cli\n"
            "CliRunner().invoke(cli, ['rotate', '--help'])\n"
            "heavy = [m for m in ('pydantic', 'pydantic_settings', 'rich', 'granian', 'orjson', 'zlib_ng')"
            " if m in sys.modules]\nprint(','.join(heavy))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""
    assert cli.name == "cli"


def test_shipped_completion_scripts_do_not_depend_on_the_installed_click(monkeypatch):
    """click changes its own scripts between releases (8.4 -> 8.5 fish); ours must come out the same anyway."""
    import click.shell_completion as cs

    for cls in (cs.BashComplete, cs.ZshComplete, cs.FishComplete):
        monkeypatch.setattr(cls, "source_template", "# another click release's script\n")
    for shell in ("bash", "zsh", "fish"):
        shipped = (ROOT / "completions" / f"metrics-ops.{shell}").read_text()
        assert shipped.split("\n", 1)[1] == docgen.completion_script(shell, cli), shell


@pytest.mark.parametrize("shell, expected", [
    ("bash", ["plain,rotate"]),
    ("zsh", ["plain", "rotate", cli.commands["rotate"].get_short_help_str()]),
    ("fish", [f"plain,rotate\t{cli.commands['rotate'].get_short_help_str()}"]),
])
def test_the_installed_script_answers_in_the_format_the_shipped_scripts_read(shell, expected):
    exe = console_script()
    assert exe, "the metrics-ops console script is not installed next to this Python (pip install -e .)"
    words = {"fish": ("metrics-ops ro", "ro")}.get(shell, ("metrics-ops ro", "1"))
    env = {**os.environ, "_METRICS_OPS_COMPLETE": f"{shell}_complete", "COMP_WORDS": words[0], "COMP_CWORD": words[1]}
    r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected


def _package_imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (at any depth: lazy imports count), from the source."""
    import ast

    package = ROOT / "metrics_ops"
    names = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in names.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("metrics_ops"):
                edges |= {t for t in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if t in names}
        graph[name] = {t for t in edges if not name.startswith(t + ".")}  # a module's own package is not a cycle
    return graph


def test_the_package_has_no_import_cycle():
    graph, done, cycles = _package_imports(), set(), []

    def visit(module, path):
        for target in graph[module]:
            if target in path:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert not cycles


def test_the_architecture_section_names_the_owner_of_every_module():
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "metrics_ops"
    modules = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py") and p.parent.name != "cli"]
    assert [m for m in modules if m not in section] == []
