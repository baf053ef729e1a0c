"""The management server: MessagePack-RPC on a Unix socket, in the switch process.

    serve(switch, "/run/pyxsw/sw0.sock")      # returns after a `shutdown` RPC or SIGINT/SIGTERM

One task per connection reads with a streaming unpacker capped at MAX_REQUEST bytes and
answers its requests in order.  Anything wrong with one request gets an error reply; a
byte stream that cannot be parsed any more (malformed MessagePack, a message over the cap)
gets one error reply with msgid None and that connection is closed.  Other connections and
the data plane never notice.  At most `max_clients` connections are served: one more gets
a "busy" error reply (msgid None) and is closed, so a burst of clients costs a bounded
number of descriptors and bounded memory; when a burst has drained, the memory it took is
handed back to the system (malloc_trim).

Events: the switch calls our listener from its own threads, maybe many thousand times a
second.  The listener only appends to a bounded inbox and wakes the loop once per batch;
the loop takes a bounded chunk per turn (requests get turns in between), packs each event
once and queues it for every subscriber, and a sender per subscriber writes several per
write.  Nothing waits for a slow subscriber and nothing grows without bound: an event that
finds the inbox or a subscriber's queue full is dropped and counted, and the subscriber
gets {"event": "events.lost", "count": N} in its place once it has caught up.  A
subscriber whose socket takes nothing for `event_stall` seconds is disconnected.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import functools
import grp
import inspect
import logging
import os
import signal
import socket
import stat
import struct
import threading
import time

import msgpack

from . import (BUSY, EVENTS_LOST, FAILED, INVALID_REQUEST, MAX_REQUEST, METHOD_NOT_FOUND,
               NOT_FOUND, NOTIFY, REQUEST, RESPONSE, RpcError)
from . import handlers
from .capture import CaptureStream
from ..config import ConfigError
from ..reload import summary

log = logging.getLogger("pyxsw.mgmt")

READ_CHUNK = 64 * 1024
MAX_CLIENTS = 256               # connections served at once ([management] max_clients)
EVENT_QUEUE = 10_000            # events waiting for one subscriber; more are dropped, counted
EVENT_INBOX = 10_000            # events from the switch the loop has not taken yet; likewise
EVENT_CHUNK = 256               # events the loop handles per turn: requests wait for no more
EVENT_WRITE = 512               # events per write to a subscriber
EVENT_STALL = 60.0              # a subscriber whose socket takes nothing this long is cut off
REFUSED_LINGER = 64             # refused connections kept open at once, until their client
REFUSED_WAIT = 1.0              # ... closes, or for this long at most
TRIM_AFTER = 64                 # a burst of this many connections is handed back once gone
TRIM_DELAY = 1.0                # ... after this long below a quarter of its peak
CLOSE_TIMEOUT = 5.0             # how long close() waits for requests under way (port.add)
ALIVE_EVERY = 1.0               # the loop's liveness stamp (Server.stalled)


class ServerError(Exception):
    """The server cannot start: the socket is in use, or its path cannot be used.  `key` is
    the config key at fault, for `pyxsw run`'s one line; `temporary` when another instance
    serves the socket (it may be on its way out: `pyxsw run` exits 75, to be retried)."""

    def __init__(self, message, key="management.socket", temporary=False):
        super().__init__(message)
        self.key = key
        self.temporary = temporary


def _pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def _gap(count):
    return _pack([NOTIFY, "event", [{"event": EVENTS_LOST, "count": count, "time": time.time()}]])


def _peer(writer):
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED), or
    Nones where it cannot be told."""
    try:
        sock = writer.get_extra_info("socket")
        return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   struct.calcsize("3i")))
    except (OSError, AttributeError, TypeError, struct.error):
        return None, None, None


def _plain(v):
    """An argument as a log line and an event show it: sets and tuples as lists."""
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def _malloc_trim():
    """Give the heap's free memory back to the system.  glibc keeps what a burst of
    connections freed (hundreds of MiB after a few bursts of 2,000) and malloc_trim(0)
    returns it; through ctypes because the server runs without the compiled core too
    (tests, tools).  Elsewhere (musl) there is nothing to call."""
    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL(None).malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim = None


class _Conn:
    """One client connection; the `conn` the RPC methods are given."""

    def __init__(self, server, writer):
        self.server = server
        self.switch = server.switch
        self.writer = writer
        self.events = None              # a deque of packed events, once subscribed
        self.behind = 0                 # events dropped since the last one it was sent
        self._wake = None
        self._sender = None
        self._after = []
        self.capture = None             # CaptureStream, once capture.start was called
        self.pid, self.uid, self.gid = _peer(writer)    # the client, as the kernel tells

    def after_reply(self, fn):
        self._after.append(fn)

    def subscribe(self):
        if not self.server.has_events:
            raise RpcError(FAILED, "this switch does not report events")
        if self.events is None:
            self.events = collections.deque()
            self._wake = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(self._send_events())
            self.server.subscribers.add(self)

    def push(self, packed, lost=0):
        """Queue what room allows of `packed` (events, packed), after a gap event for what
        this subscriber missed; `lost` more were missed just before them.  Once behind, it
        takes nothing more until its queue is half empty: then one gap event stands for
        many drops, not one for each free slot.  Returns how many of `packed` were dropped."""
        self.behind += lost
        limit = self.server.event_queue
        room = limit - len(self.events)
        if self.behind and len(self.events) > limit // 2:
            room = 0
        taken = packed[:max(room, 0)]
        if taken or (self.behind and room > 0):
            if self.behind:
                self.events.append(_gap(self.behind))
                self.behind = 0
            self.events.extend(taken)
            self._wake.set()
        dropped = len(packed) - len(taken)
        self.behind += dropped
        return dropped

    async def _send_events(self):
        stall = self.server.event_stall
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.events:
                    n = min(len(self.events), EVENT_WRITE)
                    self.writer.write(b"".join([self.events.popleft() for _ in range(n)]))
                    try:
                        # A client that doesn't read holds us here; events meanwhile are
                        # dropped and counted, and one that reads nothing for `stall` goes.
                        await asyncio.wait_for(self.writer.drain(), stall)
                    except asyncio.TimeoutError:
                        log.warning("an event subscriber read nothing for %g s: disconnected",
                                    stall)
                        self.abort()
                        return
                    if self.behind and len(self.events) <= self.server.event_queue // 2:
                        self.push([])           # caught up: tell it what it missed
        except (ConnectionError, OSError, RuntimeError):
            self.abort()                        # gone: the reading side ends the rest

    async def reply(self, msgid, error, result=None):
        try:
            data = _pack([RESPONSE, msgid, error and error.to_wire(), result])
        except (TypeError, ValueError, OverflowError) as e:
            log.error("reply to msgid %s cannot be encoded: %s", msgid, e)
            data = _pack([RESPONSE, msgid, {"code": FAILED, "message":
                                            f"the result cannot be encoded: {e}"}, None])
        try:
            self.writer.write(data)
            await self.writer.drain()
        finally:                                # a `shutdown` stops even if its caller left
            after, self._after = self._after, []
            for fn in after:
                fn()

    async def start_capture(self, port, direction, snaplen, count):
        if not hasattr(self.switch, "capture_start"):
            raise RpcError(FAILED, "this switch does not capture")
        if self.capture is not None and not self.capture.ended:
            raise RpcError(BUSY, f"this connection captures already (capture "
                                 f"{self.capture.id}): capture.stop it first")
        self.capture = stream = CaptureStream(self)
        try:
            cid = await stream.start(port, direction, snaplen, count)
        except BaseException:
            if self.capture is stream:      # it never ran: the connection may start another
                self.capture = None
            raise
        return {"id": cid, "port": port, "direction": direction, "snaplen": snaplen,
                "count": count, "linktype": 1}

    async def stop_capture(self):
        if self.capture is None or self.capture.ended:
            raise RpcError(NOT_FOUND, "no capture runs on this connection")
        try:
            return await self.capture.stop()
        except KeyError:                # its count ended it meanwhile (capture.end sent)
            raise RpcError(NOT_FOUND, "no capture runs on this connection") from None

    def close(self):
        """Close once what is buffered is sent (a reply just written, say)."""
        self._stop_events()
        self.writer.close()

    def abort(self):
        """Close now, dropping what is buffered: for a client that doesn't read."""
        self._stop_events()
        self.writer.transport.abort()

    def _stop_events(self):
        self.server.subscribers.discard(self)
        if self._sender is not None:
            self._sender.cancel()
        if self.capture is not None:
            self.capture.abandon()


class Server:
    """The server of one switch.  In a running loop: `await start()`, then `await close()`;
    or `run()` to do both around a wait for `request_stop()` in a loop of its own."""

    def __init__(self, switch, path, *, mode=None, group=None, max_request=MAX_REQUEST,
                 max_clients=MAX_CLIENTS, event_queue=EVENT_QUEUE, event_inbox=EVENT_INBOX,
                 event_stall=EVENT_STALL, metrics=None):
        self.switch = switch
        self.metrics = metrics                  # a metrics.MetricsServer served alongside
        self.path = os.fspath(path)
        # 0660 only makes sense with a group to share with; otherwise only root gets in.
        self.mode = mode if mode is not None else (0o660 if group is not None else 0o600)
        self.group = group
        self.max_request = max_request
        self.max_clients = max_clients
        self.refused = 0                        # connections refused over max_clients
        self.event_queue = event_queue
        self.event_inbox = event_inbox
        self.event_stall = event_stall
        self.events_dropped = 0                 # events not sent to a subscriber behind
        self.has_events = hasattr(switch, "add_listener")
        self.subscribers = set()
        self._inbox = collections.deque()       # events from the switch's threads
        self._inbox_gap = 0                     # events lost before they got in: all of
        self._inbox_dropped = 0                 # ... them, and those that found it full
        self._inbox_lock = threading.Lock()
        self._woken = False                     # a _deliver is scheduled
        self._peak = 0                          # most connections since the last trim
        self._trim_at = None
        self._refusing = False                  # logged that we refuse; until below again
        self._lingering = 0                     # refused connections not closed yet
        self.started = threading.Event()        # for threads waiting for run() to be ready
        self.alive_at = None                    # monotonic time the loop last turned
        self._conns = set()
        self._tasks = set()
        self._loop = None
        self._stop = None
        self._stop_requested = False
        self._server = None
        self._ident = None                      # (st_dev, st_ino) of our socket file
        self._sock = None                       # bound by bind(), not yet served
        self._listening = False                 # our listener is registered with the switch
        self._closing = False

    # ------------------------------------------------------------------ life cycle

    def bind(self):
        """Claim the socket path now: ServerError if another instance serves it.  `pyxsw run`
        calls this before starting the switch, so that a second instance refuses before it
        touches any port; start() binds if this was not done."""
        if self._sock is None:
            self._sock = self._bind()
        if self.metrics is not None:
            try:
                self.metrics.bind()
            except BaseException:
                self.release()
                raise

    def release(self):
        """Give up a bind() that was never served (the switch failed to start)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._unlink()
        if self.metrics is not None:
            self.metrics.release()

    async def start(self):
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        self.bind()
        try:
            self._server = await asyncio.start_unix_server(self._serve_conn, sock=self._sock,
                                                           limit=READ_CHUNK, backlog=128)
        except BaseException:
            self.release()
            raise
        self._sock = None                       # the asyncio server owns it now
        if self.metrics is not None:
            try:
                await self.metrics.start()
            except BaseException:
                self._server.close()
                self._unlink()
                raise
        self._alive()
        if self.has_events:
            self.switch.add_listener(self._on_event)
            self._listening = True
        self.switch.metrics_hook = self._metrics_listen
        log.info("management socket %s", self.path)

    def _metrics_listen(self, address):
        """The switch's metrics_hook (a reload's [metrics] listen, from a switch thread):
        serve the metrics endpoint on `address` (host, port), or stop it (None).  OSError
        when the new address cannot be had (the old endpoint is then served again if it
        can be, else none: metrics_listen says which)."""
        future = asyncio.run_coroutine_threadsafe(self._set_metrics(address), self._loop)
        try:
            return future.result(CLOSE_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise OSError(errno.ETIMEDOUT, "the management loop did not answer in time") from None

    async def _set_metrics(self, address):
        from .metrics import MetricsServer
        if self._closing:
            raise OSError(errno.ESHUTDOWN, "the management server is stopping")
        old, self.metrics = self.metrics, None
        if old is not None:
            await old.close()                   # its port may be the new one's
        new = MetricsServer(self.switch, *address) if address else None
        try:
            if new is not None:
                await self._loop.run_in_executor(None, new.bind)   # a name: DNS, off the loop
                await new.start()
        except BaseException:
            if new is not None:
                new.release()
            if old is not None:
                try:
                    await self._loop.run_in_executor(None, old.bind)
                    await old.start()
                    self.metrics = old
                except OSError as e:
                    log.error("metrics: the old endpoint cannot be served again either: %s", e)
                    self.switch.metrics_listen = ""
            raise
        self.metrics = new

    def _alive(self):
        """A stamp the loop renews every second while it turns (for the service watchdog)."""
        self.alive_at = time.monotonic()
        self._loop.call_later(ALIVE_EVERY, self._alive)

    def stalled(self, limit):
        """Has the loop, once started, not turned for `limit` seconds?"""
        return self.alive_at is not None and time.monotonic() - self.alive_at > limit

    def request_stop(self):
        """Ask the server to stop; safe from any thread and from a signal handler."""
        self._stop_requested = True
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:                # the loop is already closed: nothing to stop
                pass

    def request_reload(self):
        """Reload the switch's config file in the loop's executor, as config.reload does,
        and log the result (`pyxsw run` calls it on SIGHUP); safe from any thread."""
        loop = self._loop
        if loop is None:
            log.warning("reload: the management loop is not running yet; ignored")
            return
        try:
            loop.call_soon_threadsafe(self._start_reload)
        except RuntimeError:                    # the loop is already closed
            pass

    def _start_reload(self):
        task = self._loop.create_task(self._reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self):
        try:
            result = await self._loop.run_in_executor(None, self.switch.reload)
        except ConfigError as e:
            log.error("SIGHUP: reload refused, nothing changed: %s", e)
        except Exception as e:
            log.error("SIGHUP: reload failed: %s", e)
        else:
            log.warning("SIGHUP: reloaded %s: %s", result.get("config", ""), summary(result))

    async def wait_stopped(self):
        await self._stop.wait()

    async def close(self):
        """Stop listening, drop every connection, remove the socket file."""
        self._closing = True                    # a reload's metrics change: refused now
        self.switch.metrics_hook = None
        if self.metrics is not None:
            await self.metrics.close()
        if self._listening:
            self.switch.remove_listener(self._on_event)
            self._listening = False
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()
        if self._tasks:
            # A request may be in the executor (port.add), a reply (to `shutdown`) may be
            # on its way: give them a moment before cutting everything off.
            await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
        for conn in list(self._conns):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.metrics is not None:            # one a reload started while we closed
            await self.metrics.close()
        self._unlink()

    def run(self, *, use_uvloop=True, stop_signals=(signal.SIGINT, signal.SIGTERM)):
        """Serve in a new event loop in this thread until request_stop() (the shutdown RPC
        calls it; so do `stop_signals` when this is the main thread)."""
        if use_uvloop:
            import uvloop
            factory = uvloop.new_event_loop
        else:
            factory = asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._run(stop_signals))

    async def _run(self, stop_signals):
        await self.start()
        loop = asyncio.get_running_loop()
        signals = stop_signals if threading.current_thread() is threading.main_thread() else ()
        # Put back whatever handled them before: the caller (pyxsw run) still has a switch
        # to stop after we return, and a second signal must not kill it half-way.
        previous = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            loop.add_signal_handler(sig, self.request_stop)
        try:
            self.started.set()
            await self._stop.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])
            await self.close()

    # ------------------------------------------------------------------ the socket file

    def _bind(self):
        """A listening socket at self.path.  Mode and group are set before listen(): until
        then a connect is refused, so nobody gets in before chmod.  It listens from here on,
        even before the loop serves it, so that a second instance sees a live socket (the
        connection waits in the backlog) and never takes a refused one for a stale file."""
        path = self.path
        gid = self._gid()
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        except OSError as e:
            raise ServerError(f"cannot create the directory of {path}: {e.strerror}") from e
        self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            st = os.stat(path)
            self._ident = (st.st_dev, st.st_ino)
            if gid is not None:
                os.chown(path, -1, gid)
            os.chmod(path, self.mode)
            sock.listen(128)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:     # another instance bound it a moment ago
                raise ServerError(f"{path}: another pyxsw is serving this socket",
                                  temporary=True) from e
            self._unlink()
            raise ServerError(f"cannot create the management socket {path}: {e}") from e
        return sock

    def _gid(self):
        if self.group is None or isinstance(self.group, int):
            return self.group
        if self.group.isdigit():                # a gid, as chown(1) takes one
            return int(self.group)
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ServerError(f"management socket group {self.group!r}: no such group",
                              key="management.group") from None

    def _clear_stale(self):
        """Remove a socket file left by a dead instance; refuse if its owner still lives."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerError(f"{self.path} exists and is not a socket: not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:          # nobody listens: a dead instance's file
            log.info("replacing stale socket %s", self.path)
            os.unlink(self.path)
            return
        except socket.timeout:                  # a live server with a full backlog
            pass
        except OSError as e:
            raise ServerError(f"{self.path}: cannot check the existing socket: {e}") from e
        finally:
            probe.close()
        raise ServerError(f"{self.path}: another pyxsw is serving this socket", temporary=True)

    def _unlink(self):
        # Only our own file: a later instance may have replaced it.
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self.path)
        except OSError:
            pass

    # ------------------------------------------------------------------ connections

    async def _serve_conn(self, reader, writer):
        if len(self._conns) >= self.max_clients:
            return await self._refuse(reader, writer)
        conn = _Conn(self, writer)
        task = asyncio.current_task()
        self._conns.add(conn)
        self._tasks.add(task)
        self._peak = max(self._peak, len(self._conns))
        try:
            async with contextlib.aclosing(self._messages(conn, reader)) as messages:
                async for msg in messages:
                    await self._dispatch(conn, msg)
        except (ConnectionError, OSError, RuntimeError):
            pass                                # the client went away mid-reply
        finally:
            conn.close()
            try:
                await writer.wait_closed()      # the last reply sent; close() may abort it
            except Exception:
                pass
            finally:
                self._conns.discard(conn)
                self._tasks.discard(task)
                self._after_burst()

    async def _refuse(self, reader, writer):
        """One error reply, then close: the client learns why instead of hanging in the
        backlog, and nobody else notices.  Closing at once would reset a connection whose
        request is unread, or fail the client's write of it (EPIPE), and it would never see
        the reply: so what it sends is read and dropped until it closes, for a moment, for
        a bounded number of connections at a time."""
        if not self._refusing:
            log.warning("%d management connections: refusing more (management.max_clients)",
                        self.max_clients)
            self._refusing = True
        self.refused += 1
        writer.write(_pack([RESPONSE, None, {
            "code": BUSY, "message": f"the switch serves {self.max_clients} management "
                                     "connections at most (management.max_clients): "
                                     "try again later"}, None]))
        if self._lingering >= REFUSED_LINGER:
            return writer.close()
        self._lingering += 1
        try:
            writer.write_eof()
            async with asyncio.timeout(REFUSED_WAIT):
                while await reader.read(READ_CHUNK):
                    pass
        except (TimeoutError, OSError, RuntimeError):
            pass
        finally:
            self._lingering -= 1
            writer.close()

    def _after_burst(self):
        """Once a burst of connections has mostly gone, hand its memory back (a second
        later, so that a burst still under way is not trimmed again and again)."""
        n = len(self._conns)
        if n <= self.max_clients // 2:
            self._refusing = False
        if self._peak >= TRIM_AFTER and n <= self._peak // 4 and self._trim_at is None:
            self._trim_at = self._loop.call_later(TRIM_DELAY, self._trim)

    def _trim(self):
        self._trim_at = None
        if len(self._conns) <= self._peak // 4:
            _malloc_trim()
            self._peak = len(self._conns)

    def client_stats(self):
        return {"connected": len(self._conns), "max": self.max_clients, "refused": self.refused}

    async def _messages(self, conn, reader):
        """The messages a connection sends, until EOF or a stream that cannot be read on."""
        unpacker = msgpack.Unpacker(max_buffer_size=self.max_request)
        while data := await reader.read(READ_CHUNK):
            try:
                unpacker.feed(data)
            except msgpack.BufferFull:
                await conn.reply(None, RpcError(
                    INVALID_REQUEST, f"message over the limit of {self.max_request} bytes"))
                return
            while True:
                try:
                    msg = next(unpacker)
                except StopIteration:           # the rest of a message is still to come
                    break
                except Exception as e:          # FormatError, StackError, bad UTF-8, ...
                    await conn.reply(None, RpcError(INVALID_REQUEST,
                                                    f"malformed MessagePack: {e}"))
                    return
                yield msg

    async def _dispatch(self, conn, msg):
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == NOTIFY:
            return                              # we take no notifications, and never answer them
        if not (isinstance(msg, list) and len(msg) == 4 and msg[0] == REQUEST):
            return await conn.reply(None, RpcError(
                INVALID_REQUEST, "a request is [0, msgid, method, params]"))
        _, msgid, name, params = msg
        if not isinstance(msgid, int) or isinstance(msgid, bool) or not 0 <= msgid < 2**32:
            return await conn.reply(None, RpcError(INVALID_REQUEST, "msgid must be an unsigned "
                                                   f"32-bit integer, got {handlers.show(msgid)}"))
        try:
            result = await self._call(conn, name, params)
        except Exception as e:
            return await conn.reply(msgid, handlers.to_rpc_error(e))
        await conn.reply(msgid, None, result)

    async def _call(self, conn, name, params):
        fn = handlers.METHODS.get(name) if isinstance(name, str) else None
        if fn is None:
            raise RpcError(METHOD_NOT_FOUND, f"no method {handlers.show(name)}")
        kwargs = handlers.bind_args(fn, params)
        try:
            if fn.rpc_blocking:
                result = await self._loop.run_in_executor(None, functools.partial(fn, conn,
                                                                                  **kwargs))
            else:
                result = fn(conn, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as e:
            if fn.rpc_changes:
                self._changed(conn, name, kwargs, e)
            raise
        if fn.rpc_changes:
            self._changed(conn, name, kwargs)
        return result

    def _changed(self, conn, name, kwargs, error=None):
        """A management change, done (logged at info, a "mgmt" event) or refused (logged):
        who (the client's uid and pid), what and with which arguments."""
        args = {k: _plain(v) for k, v in kwargs.items()}
        text = " ".join(f"{k}={v}" for k, v in args.items()) or "-"
        fields = {"event": "mgmt", "method": name, "params": args, "uid": conn.uid,
                  "pid": conn.pid}
        if error is not None:
            log.info("%s by uid %s (pid %s) refused: %s: %s", name, conn.uid, conn.pid, text,
                     getattr(error, "message", None) or error, extra=fields)
            return
        log.info("%s by uid %s (pid %s): %s", name, conn.uid, conn.pid, text, extra=fields)
        self._on_event(dict(fields, time=time.time()))

    # ------------------------------------------------------------------ events

    def event_stats(self):
        return {"dropped": self.events_dropped, "subscribers": len(self.subscribers)}

    def _on_event(self, event):
        """The switch's listener: runs on a switch thread, at the switch's pace.  It never
        waits for the loop, which may be starved of CPU by design (priority idle)."""
        if not self.subscribers:                # the common case costs one test
            return
        with self._inbox_lock:
            if len(self._inbox) < self.event_inbox:
                self._inbox.append(event)
            elif event.get("event") == EVENTS_LOST:
                self._inbox_gap += event.get("count", 0)
            else:
                self._inbox_gap += 1
                self._inbox_dropped += 1
            if self._woken:
                return
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:                    # the loop is closing
            pass

    def _deliver(self):
        """Hand a chunk of the inbox to the subscribers; come back for the rest after
        whatever else is ready (requests first)."""
        with self._inbox_lock:
            n = min(len(self._inbox), EVENT_CHUNK)
            events = [self._inbox.popleft() for _ in range(n)]
            gap, self._inbox_gap = self._inbox_gap, 0
            dropped, self._inbox_dropped = self._inbox_dropped, 0
            self._woken = bool(self._inbox)
        if self._woken:
            self._loop.call_soon(self._deliver)
        subscribers = list(self.subscribers)
        if not subscribers:
            return
        # Pack only what some subscriber has room for: in a storm, shedding costs little
        # more than counting.  Losses the switch reports join every subscriber's gap.
        room = max(self.event_queue - len(c.events) for c in subscribers)
        packed = []
        for ev in events:
            if ev.get("event") == EVENTS_LOST:
                if packed:
                    self._push(subscribers, packed, gap)
                    room -= len(packed)
                    packed, gap = [], 0
                gap += ev.get("count", 0)
            elif len(packed) < room:
                try:
                    packed.append(_pack([NOTIFY, "event", [ev]]))
                except (TypeError, ValueError, OverflowError) as e:
                    log.error("event %r cannot be encoded: %s", ev, e)
            else:
                gap += 1
                dropped += 1
        self.events_dropped += dropped * len(subscribers)
        self._push(subscribers, packed, gap)

    def _push(self, subscribers, packed, gap):
        for conn in subscribers:
            self.events_dropped += conn.push(packed, gap)


def serve(switch, path, *, mode=None, group=None, use_uvloop=True,
          stop_signals=(signal.SIGINT, signal.SIGTERM)):
    """Serve `switch` on the Unix socket `path` in this thread until a `shutdown` RPC, a
    stop signal (when this is the main thread) or Server.request_stop().  The socket is
    0600, or 0660 with `group` (a name or a gid) unless `mode` says otherwise.
    Raises ServerError when it cannot start (e.g. another instance serves `path`).
    To refuse before a switch is started, use Server: bind(), start the switch, run()."""
    Server(switch, path, mode=mode, group=group).run(use_uvloop=use_uvloop,
                                                     stop_signals=stop_signals)
