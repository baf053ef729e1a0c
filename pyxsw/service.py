"""systemd's service protocol (sd_notify(3)), by hand from the standard library.

`pyxsw run` under a `Type=notify` unit tells systemd when the switch is ready (READY=1 with a
STATUS= line), feeds its watchdog (WATCHDOG=1) from the housekeeping loop while the switch is
healthy, and says STOPPING=1 when it stops.  Each message is one datagram to the AF_UNIX
socket named by $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
Without that variable (not run by systemd, or a unit of another Type=) everything here does
nothing.  No libsystemd: the protocol is a few lines, and the package stays pure Python on top
of its core.
"""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("pyxsw")


class Notifier:
    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.name = env.get("NOTIFY_SOCKET", "")
        self.address = _address(self.name)
        self.sock = None
        if self.address is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)    # close-on-exec
            # systemd reads its socket at once; never let a slow reader hold the switch up.
            # (A timeout would not do: on a datagram socket Python then retries a full
            # buffer in a busy loop for the whole timeout.)
            self.sock.setblocking(False)
        # Seconds between two WATCHDOG=1: at most a quarter of the timeout, and at most one:
        # a housekeeping tick that is late for a good reason (a NIC resetting as XDP attaches
        # during a re-attach, a big FDB listing) must not add up to the timeout.
        self.watchdog_interval = _watchdog_interval(env) if self.sock is not None else None
        self._fed = None                    # monotonic time of the last WATCHDOG=1 sent
        self._failed = False                # a send failed: said once in the log

    @property
    def enabled(self):
        return self.sock is not None

    def notify(self, *fields, wait=True):
        """Send "KEY=value" fields as one message; False if it could not be sent.  wait=False
        never blocks (the housekeeping thread's watchdog feeds)."""
        if self.sock is None:
            return False
        msg = "\n".join(" ".join(f.split()) if f.startswith("STATUS=") else f
                        for f in fields).encode()
        try:
            for _ in range(20 if wait else 1):
                try:
                    self.sock.sendto(msg, self.address)
                    break
                except BlockingIOError:     # systemd's buffer full: wait a little, or not
                    if not wait:
                        raise
                    time.sleep(0.05)
            else:
                raise BlockingIOError(11, "systemd's notify socket stays full")
        except OSError as e:                # systemd gone or busy: the switch goes on
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.name, e.strerror or e)
                self._failed = True
            return False
        return True

    def ready(self, status):
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status):
        return self.notify(f"STATUS={status}")

    def stopping(self, status="stopping"):
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self):
        """Feed the watchdog if it is due: called often (every healthy housekeeping tick), it
        sends at most once every watchdog_interval."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if self._fed is not None and now - self._fed < self.watchdog_interval:
            return
        if self.notify("WATCHDOG=1", wait=False):
            self._fed = now

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _address(value):
    """$NOTIFY_SOCKET as a socket address: an absolute path, or '@name' for the abstract
    name (a leading NUL byte).  None for anything else, as sd_notify(3) ignores it."""
    if value.startswith("/") and len(value) > 1:
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value:
        log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name: not notifying",
                    value)
    return None


def _watchdog_interval(env):
    """min(1 s, a quarter of $WATCHDOG_USEC), or None: no watchdog, or one meant for another
    process ($WATCHDOG_PID names the process it is for, when set)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        pid = env.get("WATCHDOG_PID")
        if pid is not None and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return min(1.0, usec / 4e6) if usec > 0 else None


def ports_status(ports):
    """One line for STATUS=: the ports that forward, and why any other does not."""
    up = [p.name for p in ports if p.state == "up"]
    other = [f"{p.name} {p.state} ({p.reason})" if p.reason else f"{p.name} {p.state}"
             for p in ports if p.state != "up"]
    line = f"forwarding on {len(up)} of {len(ports)} port(s)"
    if up:
        line += ": " + ", ".join(up)
    if other:
        line += "; not forwarding: " + ", ".join(other)
    return line
