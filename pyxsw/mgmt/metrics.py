"""Prometheus metrics: `GET /metrics` over HTTP/1.1, served by the management event loop
(config `[metrics] listen = "127.0.0.1:9477"`; off when absent).

The exposition is made of the counter tables (pyxsw.counters): every counter of every family,
its HELP the table's help and its TYPE the table's kind, named pyxsw_<family>_<counter>
(a counter whose name starts with its family's is not named twice: pyxsw_prog_seen_total,
pyxsw_pool), with `_total` after a COUNTER's name:

    PORT      pyxsw_port_rx_packets_total{port="s0"}
    QUEUE     pyxsw_queue_rx_dropped_total{port="s0",queue="0"}
    PROG      pyxsw_prog_seen_total{port="s0"}
    FASTPATH  pyxsw_fastpath_rx_packets_total{port="s0"}
    WORKER    pyxsw_worker_loops_total{worker="0"}
    FDB       pyxsw_fdb_entries, pyxsw_fdb_learned_total
    POOL      pyxsw_pool_frames, pyxsw_pool_fill

plus pyxsw_info{version,name} 1, pyxsw_uptime_seconds and pyxsw_port_up{port}.

The figures come from the switch's port_stats(), worker_stats() and status() (its "fdb" and
"frames": the FDB and POOL families), called in the loop's executor: the loop goes on
serving RPCs meanwhile.  One connection asks one thing and is closed.  A request larger than
MAX_REQUEST (431), one that is not HTTP (400), one that takes more than READ_TIMEOUT to
arrive (408) or a connection over MAX_CLIENTS (503) is answered and closed; other clients
and the RPCs never notice.

`exposition()` is pure and standard-library only: tests call it on any figures.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time

from .. import __version__
from ..counters import COUNTER, FAMILIES, FASTPATH, FDB, POOL, PORT, PROG, QUEUE, WORKER
from .server import ServerError

log = logging.getLogger("pyxsw.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATH = "/metrics"
MAX_REQUEST = 8192              # request line and headers, bytes
READ_TIMEOUT = 10.0             # for them to arrive, seconds
WRITE_TIMEOUT = 10.0            # for a client to take the reply
MAX_CLIENTS = 16                # connections at once; one more gets 503
PREFIX = "pyxsw"
KEY = "metrics.listen"          # the config key a failure to listen names
LINGER = 1.0                    # a refused request's rest is read (and dropped) this long, at
LINGER_BYTES = 1 << 20          # ... most this much, so that its client gets the reply


# ---------------------------------------------------------------------------- exposition

def metric_name(family, counter):
    """pyxsw_<family>_<counter>, the family's name not said twice; `_total` for a COUNTER."""
    base = counter.name if counter.name.split("_")[0] == family.name else \
        f"{family.name}_{counter.name}"
    return f"{PREFIX}_{base}" + ("_total" if counter.kind == COUNTER else "")


def _help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def _family_samples(ports, workers, status):
    """{family name: [(labels, {counter: value})]}: where each family's figures are."""
    out = {fam.name: [] for fam in FAMILIES}
    for name, s in sorted(ports.items()):
        out[PORT.name].append(({"port": name}, s))
        for q in s.get("queues", ()):
            out[QUEUE.name].append(({"port": name, "queue": q.get("queue")}, q))
        out[PROG.name].append(({"port": name}, s.get("xdp", {})))
        out[FASTPATH.name].append(({"port": name}, s.get("fastpath", {})))
    for w in workers:
        out[WORKER.name].append(({"worker": w.get("queue")}, w))
    out[FDB.name].append(({}, status.get("fdb", {})))
    out[POOL.name].append(({}, status.get("frames", {})))
    return out


def exposition(ports, workers, status):
    """The text exposition (format 0.0.4) of a switch's figures: `ports` as port_stats()
    gives them, `workers` as worker_stats(), `status` as status().  Every counter of every
    family has its HELP and TYPE lines, with samples where the figures have a value."""
    lines = []

    def metric(name, kind, help_, samples):
        lines.append(f"# HELP {name} {_help(help_)}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, v in samples:
            lines.append(f"{name}{_labels(labels)} {_value(v)}")

    metric(f"{PREFIX}_info", "gauge", "the switch: its pyxsw version and name",
           [({"version": status.get("version", __version__), "name": status.get("name", "")},
             1)])
    metric(f"{PREFIX}_uptime_seconds", "gauge", "seconds since the switch started",
           [({}, status.get("uptime", 0))])
    metric(f"{PREFIX}_port_up", "gauge", "1 while the port forwards, else 0",
           [({"port": n}, bool(s.get("up"))) for n, s in sorted(ports.items())])
    where = _family_samples(ports, workers, status)
    for fam in FAMILIES:
        for c in fam.counters:
            metric(metric_name(fam, c), c.kind, f"{c.help} ({fam.help})",
                   [(labels, figures[c.name]) for labels, figures in where[fam.name]
                    if isinstance(figures.get(c.name), (int, float))])
    return "\n".join(lines) + "\n"


def collect(switch):
    """The exposition of `switch` now.  It calls into the switch: run it off the loop."""
    ports = switch.port_stats()
    workers = switch.worker_stats()
    status = switch.status()
    return exposition(ports, workers, status)


# ---------------------------------------------------------------------------- HTTP

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class MetricsServer:
    """`GET /metrics` on (host, port) for `switch`.  bind() claims the address (pyxsw run
    does it before the switch starts: a clash is refused before any port is touched);
    `await start()` serves it in the running loop; `await close()` stops.  A failure to
    listen is a ServerError naming metrics.listen (temporary: the address is in use, or not
    on this machine yet)."""

    def __init__(self, switch, host, port, *, max_request=MAX_REQUEST,
                 read_timeout=READ_TIMEOUT, max_clients=MAX_CLIENTS):
        self.switch = switch
        self.host, self.port = host, port
        self.max_request = max_request
        self.read_timeout = read_timeout
        self.max_clients = max_clients
        self.scrapes = 0                        # answered with 200
        self.errors = 0                         # answered otherwise
        self._socks = None
        self._server = None
        self._conns = set()

    @property
    def address(self):
        """(host, port) it listens on: the port the kernel chose when asked for 0 (tests)."""
        socks = self._server.sockets if self._server else self._socks or ()
        return socks[0].getsockname()[:2] if socks else (self.host, self.port)

    def bind(self):
        if self._socks is not None:
            return
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise ServerError(f"cannot listen on {where}: {e.strerror}", KEY, temporary=True) \
                from None
        socks = []
        try:
            for family, kind, proto, _, addr in infos[:1]:
                s = socket.socket(family, kind, proto)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(addr)
                s.listen(64)
                s.setblocking(False)
        except OSError as e:
            for s in socks:
                s.close()
            raise ServerError(f"cannot listen on {where}: {e.strerror or e}", KEY,
                              temporary=e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL)) \
                from None
        self._socks = socks

    def release(self):
        for s in self._socks or ():
            s.close()
        self._socks = None

    async def start(self):
        self.bind()
        socks, self._socks = self._socks, None
        try:
            self._server = await asyncio.start_server(self._serve, sock=socks[0],
                                                      limit=self.max_request)
        except BaseException:
            for s in socks:
                s.close()
            raise
        host, port = self.address
        log.info("metrics on http://%s:%d%s", f"[{host}]" if ":" in host else host, port, PATH)

    async def close(self):
        if self._server is None:
            return self.release()
        self._server.close()
        for w in list(self._conns):
            w.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader, writer):
        self._conns.add(writer)
        try:
            if len(self._conns) > self.max_clients:
                return await self._reply(writer, 503, "too many metrics clients; try again\n")
            status, body, head = await self._answer(reader)
            await self._reply(writer, status, body, head)
            if status in (400, 431):
                await self._linger(reader, writer)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass                                # gone, or would not take the reply
        except Exception:                       # a bug here must not end the loop's other work
            log.exception("metrics request failed")
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _answer(self, reader):
        """(status, body, head only) of one request."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
        except asyncio.TimeoutError:
            return 408, "request not received in time\n", False
        except asyncio.LimitOverrunError:
            return 431, f"request over {self.max_request} bytes\n", False
        except asyncio.IncompleteReadError:
            return 400, "incomplete request\n", False
        try:
            line = head.split(b"\r\n", 1)[0].decode("ascii")
            method, target, version = line.split(" ")
        except (UnicodeDecodeError, ValueError):
            return 400, "not an HTTP request\n", False
        if not version.startswith("HTTP/1."):
            return 400, "HTTP/1.x only\n", False
        if method not in ("GET", "HEAD"):
            return 405, f"{method} is not served here: GET {PATH}\n", False
        if target.split("?", 1)[0] != PATH:
            return 404, f"nothing at {target}: try {PATH}\n", method == "HEAD"
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(None, collect, self.switch)
        except Exception as e:
            log.error("metrics: cannot collect the figures: %s", e)
            return 500, f"cannot collect the figures: {e}\n", method == "HEAD"
        return 200, body, method == "HEAD"

    async def _reply(self, writer, status, body, head_only=False):
        data = body.encode()
        if status == 200:
            self.scrapes += 1
        else:
            self.errors += 1
        headers = [f"HTTP/1.1 {status} {REASONS[status]}",
                   f"Content-Type: {CONTENT_TYPE if status == 200 else 'text/plain; charset=utf-8'}",
                   f"Content-Length: {len(data)}", "Connection: close",
                   f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}"]
        if status == 405:
            headers.append("Allow: GET, HEAD")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + (b"" if head_only else data))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _linger(self, reader, writer):
        """After an error reply to a request not read in full: read what the client still
        sends, for a moment, so that closing does not reset the connection (and lose the
        reply) under data unread."""
        writer.write_eof()
        left = LINGER_BYTES
        try:
            async with asyncio.timeout(LINGER):
                while left > 0 and (data := await reader.read(65536)):
                    left -= len(data)
        except (TimeoutError, OSError, asyncio.LimitOverrunError):
            pass
