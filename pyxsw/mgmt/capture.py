"""A capture streamed to the client that asked for it (`capture.start`).

The switch hands a capture its frames on its housekeeping thread (pyxsw.taps.Capture's
sink); the stream only appends them to a bounded inbox and wakes the loop once per batch.
The loop packs them into notifications

    [2, "capture", [{"id": ID, "frames": [[time ns, "in"|"out", length, bytes], ...]}]]

and writes them while the client's socket takes them: frames that find the inbox full, or
the socket's buffer over CAPTURE_BUFFER, are dropped and counted.  Nothing the client does
slows the switch.  A capture ends with its count, `capture.stop` or the connection:

    [2, "capture.end", [{"id": ID, "captured": N, "lost": M}]]

(`lost`: frames the workers' capture rings or this stream had no room for) is sent when
the count ends it; `capture.stop` replies with the same figures.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading

import msgpack

from . import NOTIFY

log = logging.getLogger("pyxsw.mgmt")

CAPTURE_INBOX = 8192            # frames handed over and not yet packed; more are dropped
CAPTURE_BUFFER = 4 << 20        # bytes waiting in the socket's buffer; frames beyond, dropped
CAPTURE_BUFFERS = 16 << 20      # ... and in those of every capturing connection together
CAPTURE_CHUNK = 64              # frames per notification


class CaptureStream:
    def __init__(self, conn):
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.id = None
        self.dropped = 0                # frames this stream dropped
        self.ended = False
        self._inbox = collections.deque()
        self._lock = threading.Lock()
        self._woken = False
        self._end = None

    # ---------------------------------------------------------------- the switch's thread

    def sink(self, frames, end):
        """taps.Capture's sink: never waits."""
        with self._lock:
            room = CAPTURE_INBOX - len(self._inbox)
            if len(frames) > room:
                self.dropped += len(frames) - max(room, 0)
                frames = frames[:max(room, 0)]
            self._inbox.extend(frames)
            if end is not None:
                self._end = end
            if self._woken:
                return
            self._woken = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:            # the loop is closing
            pass

    # ---------------------------------------------------------------- the loop

    def _deliver(self):
        with self._lock:
            frames = list(self._inbox)
            self._inbox.clear()
            end, self._end = self._end, None
            self._woken = False
        transport = self.conn.writer.transport
        if transport.is_closing():
            return
        # clients that read nothing hold CAPTURE_BUFFERS at most together, not each its own
        room = min(CAPTURE_BUFFER - transport.get_write_buffer_size(),
                   CAPTURE_BUFFERS - _held(self.conn.server))
        for i in range(0, len(frames), CAPTURE_CHUNK):
            if room <= 0:
                with self._lock:        # sink() counts from the switch's thread
                    self.dropped += len(frames) - i
                break
            chunk = [[t, d, n, data] for t, _, d, n, data in frames[i:i + CAPTURE_CHUNK]]
            data = msgpack.packb([NOTIFY, "capture", [{"id": self.id, "frames": chunk}]],
                                 use_bin_type=True)
            self.conn.writer.write(data)
            room -= len(data)
        if end is not None:
            self.ended = True
            self.conn.writer.write(msgpack.packb(
                [NOTIFY, "capture.end", [self.result(end)]], use_bin_type=True))

    def result(self, switch_result):
        return {"id": self.id, "captured": switch_result["captured"] - self.dropped,
                "lost": switch_result["lost"] + self.dropped}

    async def start(self, port, direction, snaplen, count):
        self.id = await self.loop.run_in_executor(
            None, lambda: self.conn.switch.capture_start(port, direction, snaplen, count,
                                                         self.sink))
        return self.id

    async def stop(self):
        """Stop it (if its count has not): the switch's figures with this stream's."""
        res = await self.loop.run_in_executor(None, self.conn.switch.capture_stop, self.id)
        self._deliver()                 # what the switch handed over before it stopped
        self.ended = True
        return self.result(res)

    def abandon(self):
        """The connection is gone: stop the capture without waiting for it."""
        if self.ended:
            return
        self.ended = True

        def stop():
            try:
                self.conn.switch.capture_stop(self.id)
            except KeyError:            # its count had ended it meanwhile
                pass
            except Exception:
                log.exception("stopping capture %s", self.id)
        self.loop.run_in_executor(None, stop)


def _held(server):
    """Bytes the capturing connections' sockets hold, not yet taken by their clients."""
    return sum(c.writer.transport.get_write_buffer_size()
               for c in list(server._conns) if c.capture is not None)
