"""Shell completion generated from the parsers (pyxsw.completion): the scripts parse, and
run in bash (and zsh, if installed) they offer what the parsers accept."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def completion(shell):
    return subprocess.run([sys.executable, "-m", "pyxsw.completion", shell], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def bash_complete(script, line):
    """What the bash function offers for `line` (the cursor at its end)."""
    p = subprocess.run(["bash", "-c", 'source /dev/stdin; read -ra COMP_WORDS <<< "$1"; '
                        '[[ $1 == *" " ]] && COMP_WORDS+=(""); '
                        'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _pyxsw; '
                        'printf "%s\\n" "${COMPREPLY[@]}"', "_", line],
                       input=script, capture_output=True, text=True, check=True)
    return p.stdout.split()


OLD_CTL_WORDS = {"status", "port", "fdb", "mode", "aging", "shutdown", "events", "methods",
                 "workers", "vlan"}


def ctl_words():
    """The words `pyxsw ctl` takes first, from its parser: the contract's and newer ones."""
    import argparse
    from pyxsw.mgmt import ctl
    sub = next(a for a in ctl.build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= OLD_CTL_WORDS
    return set(sub.choices)


def test_bash_completion(short_dir):
    script = completion("bash")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert bash_complete(script, "pyxsw ctl po") == ["port"]
    assert sorted(bash_complete(script, "pyxsw ctl port ")) == ["add", "del", "list", "set",
                                                                "stats"]
    assert sorted(bash_complete(script, "pyxsw ctl ")) == sorted(ctl_words())
    assert "--output" in bash_complete(script, "pyxsw ctl save --")
    assert sorted(bash_complete(script, "pyxsw ")) == ["ctl", "demo", "doctor", "lab", "run"]
    assert sorted(bash_complete(script, "pyxsw doctor --")) == ["--config", "--help", "--json"]
    assert bash_complete(script, "pyxsw ctl -s /x --timeout 3 fdb s") == ["show"]
    assert bash_complete(script, "pyxsw ctl mode i") == ["interrupt"]
    assert bash_complete(script, "pyxsw ctl --js") == ["--json"]
    assert "--vlan" in bash_complete(script, "pyxsw ctl fdb add --")
    assert bash_complete(script, "pyxsw ctl fdb show --vlan ") == []     # a number: none
    assert "--interval" in bash_complete(script, "pyxsw ctl workers --")
    assert bash_complete(script, "pyxsw ctl worker ") == ["stats"]
    assert {"--rate", "--interval"} <= set(bash_complete(script, "pyxsw ctl port stats --"))
    assert "--interval" in bash_complete(script, "pyxsw ctl top --")
    (short_dir / "lab.toml").write_text("")
    assert bash_complete(script, f"pyxsw run -c {short_dir}/la") == [f"{short_dir}/lab.toml"]
    assert bash_complete(script, f"pyxsw ctl -s {short_dir}/la") == [f"{short_dir}/lab.toml"]


ZSH_STUBS = """
_describe() { local -a a; a=("${(@P)4}"); print -l -- ${a%%:*} }
compadd() { shift; print -l -- "$@" }
_files() { print -- '<files>' }
compdef() { print -- "compdef $*" }
"""


def test_zsh_completion(short_dir):
    """zsh -n, then the function run with its completion builtins stubbed to print what
    they are given (the real ones filter by the prefix typed: here everything offered)."""
    path = short_dir / "_pyxsw"
    path.write_text(completion("zsh"))
    subprocess.run(["zsh", "-n", str(path)], check=True)

    def offered(line):
        p = subprocess.run(["zsh", "-f", "-c", ZSH_STUBS + f"source {path}\n"
                            'words=(${=1}); [[ $1 == *" " ]] && words+=(""); '
                            "CURRENT=$#words; PREFIX=${words[CURRENT]}; _pyxsw", "_", line],
                           capture_output=True, text=True, check=True)
        return p.stdout.split("\n")

    assert "compdef _pyxsw pyxsw" in offered("pyxsw ")     # sourced: it registers itself
    assert "port" in offered("pyxsw ctl po")
    assert {"add", "del", "list", "stats"} <= set(offered("pyxsw ctl -s /x port "))
    assert {"poll", "interrupt", "adaptive"} <= set(offered("pyxsw ctl mode "))
    assert "--json" in offered("pyxsw ctl --js")
    assert "<files>" in offered("pyxsw run -c ")
    assert "<files>" in offered("pyxsw doctor -c ")


def test_completion_follows_the_parsers():
    from pyxsw.completion import tree
    t = tree()
    assert set(t[()]["words"]) == {"run", "ctl", "lab", "demo", "doctor"}
    assert set(t[("ctl",)]["words"]) == ctl_words()
    assert {"--access", "--trunk", "--native"} <= set(t[("ctl", "port", "set")]["opts"])
    assert t[("ctl", "mode")]["choices"] == ["poll", "interrupt", "adaptive"]
    assert {"-s", "--socket", "--json", "--timeout", "--wide"} <= \
        set(t[("ctl", "port", "stats")]["opts"])
    assert t[("run",)]["fopts"] == ["-c", "--config"]
    assert t[("doctor",)]["fopts"] == ["-c", "--config"]
