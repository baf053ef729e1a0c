"""Shell completion for `pyxsw`, generated from its argparse parsers (run, lab, demo, and
ctl with every word of it), so that it cannot drift from them:

    python -m pyxsw.completion bash > /etc/bash_completion.d/pyxsw
    python -m pyxsw.completion zsh > /usr/local/share/zsh/site-functions/_pyxsw

Written here rather than with shtab or argcomplete: the walk is short, adds no dependency,
and the scripts it prints are plain shell (argcomplete starts Python on every Tab).  Both
scripts walk the words typed so far down the tree of commands, step over option values, and
offer the commands, options or choices of where they end; the value of an option whose
metavar is FILE or SOCKET is completed as a file name.
"""
from __future__ import annotations

import argparse
import sys

FILE_METAVARS = {"FILE", "SOCKET"}


def tree():
    """{command words: node} for `pyxsw` and everything below it.  `pyxsw ctl` has a parser
    of its own (pyxsw.mgmt.ctl); the top-level one only lists it."""
    from .cli import build_parser
    from .mgmt.ctl import build_parser as ctl_parser
    return dict(_walk(build_parser(), (), {("ctl",): ctl_parser()}))


def _walk(parser, path, replace):
    node = {"words": {}, "opts": {}, "vopts": [], "fopts": [], "choices": []}
    below = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in a._choices_actions}
            for name, sub in a.choices.items():
                node["words"][name] = helps.get(name, "")
                below.append(((*path, name), replace.get((*path, name), sub)))
        elif a.option_strings:
            for o in a.option_strings:
                node["opts"][o] = a.help if a.help and a.help != argparse.SUPPRESS else ""
                if a.nargs != 0:                            # takes a value
                    node["vopts"].append(o)
                    if a.metavar in FILE_METAVARS:
                        node["fopts"].append(o)
        elif a.choices:
            node["choices"] += [str(c) for c in a.choices]
    yield path, node
    for p, sub in below:
        yield from _walk(sub, p, replace)


def _q(text):
    """Single-quoted for either shell."""
    return "'" + text.replace("'", "'\\''") + "'"


def _line(text):
    return " ".join(text.split())


def bash():
    cases = []
    for path, n in tree().items():
        values = {"words": " ".join(n["words"]), "opts": " ".join(n["opts"]),
                  "vopts": " ".join(n["vopts"]), "fopts": " ".join(n["fopts"]),
                  "choices": " ".join(n["choices"])}
        cases.append(f"        {_q(' '.join(path))}) "
                     + " ".join(f"{k}={_q(v)}" for k, v in values.items()) + " ;;")
    return BASH.replace("@CASES@", "\n".join(cases))


def zsh():
    cases = []
    for path, n in tree().items():
        arrays = {"cmds": [f"{w}:{_line(h)}" for w, h in n["words"].items()],
                  "opts": [f"{o}:{_line(h)}" for o, h in n["opts"].items()],
                  "vopts": n["vopts"], "fopts": n["fopts"], "choices": n["choices"]}
        cases.append(f"        ({_q(' '.join(path))}) "
                     + " ".join(f"{k}=({' '.join(map(_q, v))})" for k, v in arrays.items())
                     + " ;;")
    return ZSH.replace("@CASES@", "\n".join(cases))


BASH = r"""# bash completion for pyxsw, made by `python -m pyxsw.completion bash`: do not edit.

_pyxsw_node() {     # what can follow the command words "$1"
    case $1 in
@CASES@
        *) words='' opts='' vopts='' fopts='' choices='' ;;
    esac
}

_pyxsw() {
    local cur=${COMP_WORDS[COMP_CWORD]} node='' w i value=0
    local words opts vopts fopts choices
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if ((value)); then value=0; continue; fi
        _pyxsw_node "$node"
        if [[ " $vopts " == *" $w "* ]]; then
            value=1
        elif [[ $w != -* && " $words " == *" $w "* ]]; then
            node=${node:+$node }$w
        fi
    done
    _pyxsw_node "$node"
    COMPREPLY=()
    if ((value)); then              # an option's value: a file name, or nothing to offer
        if [[ " $fopts " == *" ${COMP_WORDS[COMP_CWORD-1]} "* ]]; then
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
    elif [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -W "$words $choices" -- "$cur")
    fi
    return 0
}

complete -F _pyxsw pyxsw
"""

ZSH = r"""#compdef pyxsw
# zsh completion for pyxsw, made by `python -m pyxsw.completion zsh`: do not edit.

_pyxsw_node() {     # what can follow the command words "$1"
    case $1 in
@CASES@
        (*) cmds=() opts=() vopts=() fopts=() choices=() ;;
    esac
}

_pyxsw() {
    local node='' w i value=0
    local -a cmds opts vopts fopts choices
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        if ((value)); then value=0; continue; fi
        _pyxsw_node "$node"
        if (( ${vopts[(Ie)$w]} )); then
            value=1
        elif [[ $w != -* ]] && (( ${cmds[(I)${(b)w}:*]} )); then
            node=${node:+$node }$w
        fi
    done
    _pyxsw_node "$node"
    if ((value)); then              # an option's value: a file name, or nothing to offer
        (( ${fopts[(Ie)${words[CURRENT-1]}]} )) && _files
        return 0
    fi
    if [[ $PREFIX == -* ]]; then
        _describe -t options option opts
    else
        (( $#cmds )) && _describe -t commands command cmds
        (( $#choices )) && compadd -- $choices
    fi
    return 0
}

if [[ $funcstack[1] == _pyxsw ]]; then _pyxsw "$@"; else compdef _pyxsw pyxsw; fi
"""

SHELLS = {"bash": bash, "zsh": zsh}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyxsw.completion",
                                description="Print the completion script of pyxsw for a shell.")
    p.add_argument("shell", choices=sorted(SHELLS))
    sys.stdout.write(SHELLS[p.parse_args(argv).shell]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
