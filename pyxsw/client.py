"""Python client of a running switch's management socket.

    from pyxsw.client import Client, RpcError
    with Client("/run/pyxsw/sw0.sock") as c:
        c.fdb_add("02:00:00:00:00:09", "s1")
        for entry in c.fdb_list(port="s1"):
            print(entry["mac"], entry["vlan"], entry["age"])
        c.call("mode.set", mode="interrupt")         # any method by its RPC name
        c.methods()                                  # what this switch serves, described
        c.subscribe()                                # events from now on are kept
        for event in c.events(timeout=10):           # {"event": "fdb.learn", "mac": ...}
            ...

    async with AsyncClient(path) as c:               # the same methods, awaited
        print(await c.status())
        async for event in c.events():
            ...

An error reply raises RpcError(code, message).  A socket that is missing or refused raises
the OSError of connect() (FileNotFoundError, ConnectionRefusedError, PermissionError); a
connection the switch closes raises ConnectionError, or RpcError when it said why (code
"busy": it already serves as many connections as it allows; try again later).  A Client is
not thread-safe: use one per thread.  An AsyncClient can have many calls in flight at once.
"""
from __future__ import annotations

import asyncio
import collections
import socket

import msgpack

from .mgmt import DEFAULT_SOCKET, NOTIFY, REQUEST, RESPONSE, RpcError, busy_share

__all__ = ["Client", "AsyncClient", "RpcError", "ProtocolError", "DEFAULT_SOCKET", "busy_share"]

MAX_REPLY = 1 << 30             # the switch is trusted; a big FDB lists to tens of MB
READ_CHUNK = 256 * 1024


class ProtocolError(ConnectionError):
    """The other end does not speak the switch's MessagePack-RPC."""


def _request(msgid, method, kwargs):
    return msgpack.packb([REQUEST, msgid, method, [kwargs] if kwargs else []], use_bin_type=True)


def _check(msg):
    """A well-formed response or notification, else ProtocolError."""
    if isinstance(msg, list):
        if len(msg) == 4 and msg[0] == RESPONSE:
            err = msg[2]
            if err is None or (isinstance(err, dict) and "code" in err):
                return msg
        elif len(msg) == 3 and msg[0] == NOTIFY:
            return msg
    raise ProtocolError(f"not a MessagePack-RPC response: {msg!r:.200}")


def _error(err):
    return RpcError(str(err.get("code")), str(err.get("message", "")))


def _event(msg):
    """The event of a [2, "event", [event]] notification, or None for any other one."""
    _, name, params = msg
    if name == "event" and isinstance(params, list) and len(params) == 1:
        return params[0]
    return None


def _given(**kwargs):
    return {k: v for k, v in kwargs.items() if v is not None}


# The RPC methods that have no helper of their own name, and what stands for them.
NOT_HELPERS = {"events.subscribe": "subscribe() and events(): the connection keeps the state",
               "capture.start": "Client.capture(): the connection keeps the state",
               "capture.stop": "Client.capture_stop()"}


class _Methods:
    """The RPC methods under Python names: "port.add" is port_add(), with the method's
    parameters (pyxsw.mgmt.handlers.METHODS; a test checks that every method has its helper,
    or is in NOT_HELPERS, and that they agree).  `call` is a plain method in Client and a
    coroutine in AsyncClient, so these return a result there and an awaitable here."""

    def status(self):
        return self.call("status")

    def port_list(self):
        return self.call("port.list")

    def port_add(self, name, vlan_mode=None, vlan=None, allowed=None, native=None):
        return self.call("port.add", name=name, **_given(vlan_mode=vlan_mode, vlan=vlan,
                                                         allowed=allowed, native=native))

    def port_del(self, name):
        return self.call("port.del", name=name)

    def port_stats(self, name=None):
        return self.call("port.stats", **_given(name=name))

    def fdb_list(self, port=None, vlan=None):
        return self.call("fdb.list", **_given(port=port, vlan=vlan))

    def fdb_add(self, mac, port, vlan=None):
        return self.call("fdb.add", mac=mac, port=port, **_given(vlan=vlan))

    def fdb_del(self, mac, vlan=None):
        return self.call("fdb.del", mac=mac, **_given(vlan=vlan))

    def fdb_flush(self, port=None, vlan=None):
        return self.call("fdb.flush", **_given(port=port, vlan=vlan))

    def mode_set(self, mode):
        return self.call("mode.set", mode=mode)

    def aging_set(self, seconds):
        return self.call("aging.set", seconds=seconds)

    def shutdown(self):
        return self.call("shutdown")

    def methods(self):
        return self.call("methods")

    def port_set(self, port, vlan_mode=None, vlan=None, allowed=None, native=None):
        """port_set("s1", "trunk", allowed=[10, 20], native=0), port_set("s2", vlan=10)."""
        return self.call("port.set", port=port, **_given(vlan_mode=vlan_mode, vlan=vlan,
                                                         allowed=allowed, native=native))

    def vlan_list(self, vlan=None):
        return self.call("vlan.list", **_given(vlan=vlan))

    def worker_stats(self):
        """Per worker, its counters and `busy`: the share of its passes since it started
        that found frames.  Over a span: busy_share(later[q], since=earlier[q])."""
        return self.call("worker.stats")

    def mirror_add(self, name, source, output, direction="both"):
        """mirror_add("m0", ["s0", "s1"], "s2"): what s0 and s1 receive and send, to s2."""
        return self.call("mirror.add", name=name, source=source, output=output,
                         direction=direction)

    def mirror_del(self, name):
        return self.call("mirror.del", name=name)

    def mirror_list(self):
        return self.call("mirror.list")

    def config_reload(self):
        """{"changed", "failed", "restart", "config"}: what reading the file again did."""
        return self.call("config.reload")

    def config_save(self):
        """{"toml": the running configuration as a file, "config": the same as a dict}."""
        return self.call("config.save")


class Client(_Methods):
    """A blocking client.  `timeout` (seconds, None for none) bounds each call."""

    def __init__(self, path=DEFAULT_SOCKET, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(path)
        except BaseException:
            self._sock.close()
            raise
        self._unpacker = msgpack.Unpacker(max_buffer_size=MAX_REPLY)
        self._msgid = 0
        self._events = collections.deque()      # events that came while waiting for a reply
        self._subscribed = False
        self._frames = collections.deque()      # captured frames not yet taken; its end
        self.capture_result = None              # {"id", "captured", "lost"} once it ended

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._sock.close()

    def call(self, method, **kwargs):
        """Call `method` with named arguments; its result, or RpcError."""
        self._msgid = (self._msgid + 1) & 0xFFFFFFFF
        msgid = self._msgid
        self._sock.settimeout(self.timeout)
        try:
            self._sock.sendall(_request(msgid, method, kwargs))
        except (BrokenPipeError, ConnectionResetError):
            raise self._why_closed() or ConnectionError(
                f"{self.path}: the switch closed the connection") from None
        while True:
            msg = self._receive()
            if msg[0] == NOTIFY:
                self._notified(msg)
            elif msg[1] == msgid:
                if msg[2] is not None:
                    raise _error(msg[2])
                return msg[3]
            elif msg[1] is None and msg[2] is not None:     # the server could not parse us
                raise _error(msg[2])

    def subscribe(self):
        """Start receiving events on this connection (events() does it when needed; call
        this first when nothing may be missed between now and the first next())."""
        if not self._subscribed:
            self.call("events.subscribe")
            self._subscribed = True

    def events(self, timeout=None):
        """Subscribe if not yet done, then yield events as they come.  With `timeout`,
        TimeoutError when none came for that long; it ends when the switch closes."""
        self.subscribe()
        while True:
            while self._events:
                yield self._events.popleft()
            self._sock.settimeout(timeout)
            try:
                msg = self._receive()
            except ConnectionError:
                return
            except socket.timeout:
                raise TimeoutError(f"no event for {timeout} s") from None
            if msg[0] == NOTIFY:
                self._notified(msg)

    def capture(self, port, direction="both", snaplen=None, count=0, timeout=None):
        """Capture port's frames on this connection (the capture.start method): yield
        (time ns, "in"|"out", length on the wire, bytes kept) as they come.  It ends after
        `count` frames (0: never), or once capture_stop() was called and the frames before
        it were given; capture_result then holds {"id", "captured", "lost"}.  With
        `timeout`, TimeoutError when no frame came for that long (the capture runs on).
        The capture starts before this returns."""
        self.capture_result = None
        self._frames.clear()
        self.call("capture.start", port=port, direction=direction, count=count,
                  **_given(snaplen=snaplen))
        return self.capture_frames(timeout)

    def capture_frames(self, timeout=None):
        """The frames of the capture under way, as capture() gives them (after a
        KeyboardInterrupt in capture()'s loop: capture_stop(), then this for the rest)."""
        while True:
            while self._frames:
                item = self._frames.popleft()
                if isinstance(item, dict):
                    self.capture_result = item
                    return
                yield item
            self._sock.settimeout(timeout)
            try:
                msg = self._receive()
            except socket.timeout:
                raise TimeoutError(f"no frame for {timeout} s") from None
            if msg[0] == NOTIFY:
                self._notified(msg)

    def capture_stop(self):
        """Stop this connection's capture: {"id", "captured", "lost"}.  The frames that came
        before the reply are still given by capture()'s generator, then it ends."""
        res = self.call("capture.stop")
        self._frames.append(res)
        return res

    def _notified(self, msg):
        _, name, params = msg
        if (ev := _event(msg)) is not None:
            self._events.append(ev)
        elif name == "capture" and isinstance(params, list) and params:
            self._frames.extend(tuple(f) for f in params[0].get("frames", ()))
        elif name == "capture.end" and isinstance(params, list) and params:
            self._frames.append(params[0])

    def _why_closed(self):
        """The error reply the switch sent before closing on us (msgid None), if any."""
        try:
            msg = self._receive()
        except (OSError, ProtocolError):
            return None
        if msg[0] == RESPONSE and msg[1] is None and msg[2] is not None:
            return _error(msg[2])
        return None

    def _receive(self):
        while True:
            try:
                return _check(next(self._unpacker))
            except StopIteration:
                pass
            except (ValueError, msgpack.UnpackException) as e:
                raise ProtocolError(f"bad data from {self.path}: {e}") from e
            data = self._sock.recv(READ_CHUNK)
            if not data:
                raise ConnectionError(f"{self.path}: the switch closed the connection")
            self._unpacker.feed(data)


class AsyncClient(_Methods):
    """An asyncio client: `async with AsyncClient(path) as c` or `await c.connect()`."""

    def __init__(self, path=DEFAULT_SOCKET):
        self.path = path
        self._reader = self._writer = self._task = None
        self._pending = {}                      # msgid -> future of its reply
        self._msgid = 0
        self._events = asyncio.Queue()
        self._subscribed = False
        self._closed_error = None
        self._refused = None                    # an error the switch sent with msgid None

    async def connect(self):
        self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        self._task = asyncio.get_running_loop().create_task(self._read_replies())
        return self

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def call(self, method, **kwargs):
        if self._closed_error is not None:
            raise self._closed_error
        while True:                             # skip ids still in flight after a wrap
            self._msgid = (self._msgid + 1) & 0xFFFFFFFF
            if self._msgid not in self._pending:
                break
        msgid = self._msgid
        fut = asyncio.get_running_loop().create_future()
        self._pending[msgid] = fut
        try:
            self._writer.write(_request(msgid, method, kwargs))
            try:
                await self._writer.drain()
            except ConnectionError:             # closed on us: the reader knows why
                await asyncio.wait([fut, self._task], return_when=asyncio.FIRST_COMPLETED)
                if not fut.done():
                    raise self._closed_error from None
            return await fut
        finally:
            self._pending.pop(msgid, None)

    async def subscribe(self):
        if not self._subscribed:
            await self.call("events.subscribe")
            self._subscribed = True

    async def events(self):
        """Subscribe if not yet done, then yield events until the switch closes."""
        await self.subscribe()
        while (ev := await self._events.get()) is not None:
            yield ev

    async def _read_replies(self):
        unpacker = msgpack.Unpacker(max_buffer_size=MAX_REPLY)
        error = ConnectionError(f"{self.path}: the switch closed the connection")
        try:
            while data := await self._reader.read(READ_CHUNK):
                unpacker.feed(data)
                for msg in unpacker:
                    self._dispatch(_check(msg))
        except (ValueError, msgpack.UnpackException) as e:
            error = ProtocolError(f"bad data from {self.path}: {e}")
        except (ProtocolError, OSError) as e:
            error = e
        finally:
            self._closed_error = error = self._refused or error
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            self._events.put_nowait(None)       # ends events()

    def _dispatch(self, msg):
        if msg[0] == NOTIFY:
            if (ev := _event(msg)) is not None:
                self._events.put_nowait(ev)
            return
        _, msgid, err, result = msg
        if msgid is None and err is not None:   # could not parse us, or busy: fail them all
            targets = list(self._pending.values())
            self._refused = _error(err)
        else:
            targets = [self._pending.get(msgid)]
        for fut in targets:
            if fut is not None and not fut.done():
                if err is not None:
                    fut.set_exception(_error(err))
                else:
                    fut.set_result(result)
