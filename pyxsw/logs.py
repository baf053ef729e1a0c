"""The switch's log lines: a level on every line, systemd's priority prefix under the journal,
and JSON lines for log shippers.  Standard library only.

    pyxsw: warning: port s1 is down                          [log] format = "text"
    <4>pyxsw: warning: port s1 is down                       ... with stderr on the journal
    {"time": 1764450000.123, "level": "warning", "logger": "pyxsw",
     "message": "port s1 is down", "event": "port.down", "port": "s1"}   format = "json"

The `<N>` prefix is sd-daemon(3)'s: journald stores the line at priority N (3 err, 4 warning,
6 info, 7 debug), so `journalctl -p warning -u pyxsw@sw0` finds port-down lines.  It is
written only when stderr *is* the journal stream: systemd sets JOURNAL_STREAM to that
stream's "device:inode" (systemd.exec(5)), which a redirected stderr does not match, so a
`pyxsw run 2>file` started from a unit's shell gets clean lines.

Structured fields: whatever a call passes in `extra` (log.warning("...", extra={"port":
"s1"})) becomes a key of its JSON object; text lines show only the message.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback

LEVELS = ("debug", "info", "warning", "error")     # [log] level
FORMATS = ("text", "json")                          # [log] format
PREFIX = "pyxsw"

# sd-daemon(3) priorities by logging level
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}
# A LogRecord's own attributes: anything else on a record came in `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def level_name(levelno):
    """'debug' | 'info' | 'warning' | 'error' | 'critical' (lower case, as in the config)."""
    return logging.getLevelName(levelno).lower()


def priority(levelno):
    """The journal priority of a logging level (the nearest one at or above it)."""
    for lv in sorted(_PRIORITY, reverse=True):
        if levelno >= lv:
            return _PRIORITY[lv]
    return 7


def fields(record):
    """The structured fields a log call passed in `extra`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _one_line(text):
    return " ".join(str(text).splitlines())


class TextFormatter(logging.Formatter):
    """`pyxsw: LEVEL: message`, one line; with `journal`, `<N>` first.  A traceback
    (log.exception) follows on lines of its own, each with the same prefix, so that the
    journal files them at the record's priority too."""

    def __init__(self, journal=False):
        super().__init__()
        self.journal = journal

    def format(self, record):
        head = (f"<{priority(record.levelno)}>" if self.journal else "") + \
            f"{PREFIX}: {level_name(record.levelno)}: "
        lines = [head + _one_line(record.getMessage())]
        if record.exc_info:
            tb = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            lines += [head + "  " + line for line in tb.splitlines()]
        return "\n".join(lines)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (Unix seconds), level, logger, message, the record's
    structured fields, and "exception" (the traceback) when there is one."""

    def format(self, record):
        obj = {"time": round(record.created, 6), "level": level_name(record.levelno),
               "logger": record.name, "message": _one_line(record.getMessage())}
        for k, v in fields(record).items():
            obj.setdefault(k, v)
        if record.exc_info:
            obj["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(obj, default=str, ensure_ascii=False)


def on_journal(stream=None, env=None):
    """Is `stream` (stderr) the journal's stream this process was given (JOURNAL_STREAM)?"""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def formatter(fmt="text", journal=None, stream=None):
    """The formatter of a `[log] format`; journal None: tell from JOURNAL_STREAM."""
    if fmt == "json":
        return JsonFormatter()
    if journal is None:
        journal = on_journal(stream)
    return TextFormatter(journal=journal)


def setup(level="info", fmt="text", stream=None):
    """Send log records at `level` and above to `stream` (stderr) in `fmt`: the root
    logger's, as logging.basicConfig() would, so that the libraries' (asyncio's) lines are
    formatted alike.  Replaces what an earlier call set up."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream=stream))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_pyxsw", False):
            root.removeHandler(h)
    handler._pyxsw = True
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def reconfigure(level, fmt):
    """A reload's [log]: what setup() did, again with these; ValueError when this process's
    logging was not set up by setup() (a program that embeds the switch keeps its own)."""
    if not any(getattr(h, "_pyxsw", False) for h in logging.getLogger().handlers):
        raise ValueError("this process's logging is not pyxsw's (an embedding program's)")
    stream = next(h.stream for h in logging.getLogger().handlers if getattr(h, "_pyxsw", False))
    setup(level, fmt, stream)
