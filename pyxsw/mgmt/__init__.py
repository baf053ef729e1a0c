"""The management plane: a MessagePack-RPC server in the switch process (`server`), the
RPC methods (`handlers`, whose table is the one list of them), what they need of the switch
(`api.SwitchAPI`), a switch in memory for tests and tools (`fake`) and the `pyxsw ctl`
command (`ctl`).  The Python client is `pyxsw.client`.

What server and clients share lives here: the framing constants, the default socket, the
request size limit, the error type and what a worker's busy share is.

Wire format (MessagePack-RPC):
    request       [0, msgid, method, params]     params: [] or [{named arguments}]
    response      [1, msgid, error, result]      error: None or {"code": str, "message": str}
    notification  [2, method, params]            the server sends [2, "event", [event]]
"""

REQUEST, RESPONSE, NOTIFY = 0, 1, 2
RUNTIME_DIR = "/run/pyxsw"              # where switches keep their sockets by default
DEFAULT_SOCKET = RUNTIME_DIR + "/sw0.sock"

# Requests are small; a bigger one is a client bug or an attack, and the server must not
# buffer it.  Replies (an FDB listing) can be far bigger: clients allow much more.
MAX_REQUEST = 1 << 20

# The error codes a reply can carry.
INVALID_REQUEST = "invalid_request"     # not a [0, msgid, method, params] message
METHOD_NOT_FOUND = "method_not_found"
INVALID_PARAMS = "invalid_params"       # missing, unknown or ill-typed argument
NOT_FOUND = "not_found"                 # no such port, interface or FDB entry
EXISTS = "exists"                       # already a port
FAILED = "failed"                       # the switch could not do it; the message says why
BUSY = "busy"                           # too many connections: this one is closed; try later

# The event that stands for events a subscriber will never see (it fell behind, or the
# switch could not keep them): {"event": "events.lost", "count": N}, in their place.
EVENTS_LOST = "events.lost"


class RpcError(Exception):
    """An error reply: `code` is one of the codes above, `message` is for a human."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_wire(self):
        return {"code": self.code, "message": self.message}


def busy_share(worker, since=None):
    """The share of a worker's time spent in passes that found frames to forward, from a
    `worker.stats` record: since the worker started, or since `since`, an earlier record
    of the same worker.  1 - busy is its headroom: a poll worker's core reads 100% busy
    to top(1) whatever it forwards, this does not.  Measured with the CPU's time-stamp
    counter per pass (cycles, busy_cycles); a record without those (an older switch)
    gives the share of its passes instead, which understates it (an idle pass is short).
    None when no time passed in that span."""
    def d(key):
        return worker.get(key, 0) - ((since or {}).get(key, 0))
    if "cycles" in worker:
        total, busy = d("cycles"), d("busy_cycles")
    else:
        total, busy = d("loops"), d("loops") - d("idle_loops")
    if total <= 0:
        return None
    # two records of a worker that restarted in between: keep the share in 0..1
    return round(min(max(busy / total, 0.0), 1.0), 4)
