# Events: typed rings from the workers to the control thread.
#
# A worker reports what the control side must hear of (today a MAC learned or moved; later
# capture or fast-path hits) as an Event, a kind and a payload, pushed into its own ring: one
# producer, one consumer, no lock.  A full ring counts the event as lost and never waits:
# the packet path does not block on the control side.
#
# The control thread does not poll the rings on a timer: it sleeps in poll(2) on an eventfd
# that a worker writes when it has put an event into a ring the consumer had emptied, at most
# once per pass of its loop (ev_flush), so a burst of learning costs one write, not one per
# MAC.  No wake-up is lost: the producer publishes its event and then looks at the consumer's
# position; the consumer publishes its position and then looks at the producer's again, each
# with a full fence between, so at least one of them sees the other's store (if the producer
# saw a stale position, the consumer sees the new event and takes it before it sleeps).


cdef void ev_init(EventRing *r, int efd) noexcept nogil:
    r.head = 0
    r.tail = 0
    r.lost = 0
    r.efd = efd
    r.signal = False


cdef inline Event *ev_reserve(EventRing *r) noexcept nogil:
    """Producer: the next slot to fill, or NULL (the event counted as lost) when full."""
    if r.head - pyxsw_load_acq32(&r.tail) >= EV_RING:
        r.lost += 1
        return NULL
    return &r.ev[r.head & (EV_RING - 1)]


cdef inline void ev_commit(EventRing *r) noexcept nogil:
    """Producer: publish the slot ev_reserve() gave; owe a wake-up if the ring was empty."""
    cdef uint32_t h = r.head
    pyxsw_store_rel32(&r.head, h + 1)
    pyxsw_fence_seq()
    if pyxsw_load_acq32(&r.tail) == h:
        r.signal = True


cdef inline void ev_flush(EventRing *r) noexcept nogil:
    """Producer: the wake-up owed, if any (once per pass of the worker loop)."""
    cdef uint64_t one = 1
    if r.signal:
        r.signal = False
        if r.efd >= 0:
            write(r.efd, &one, 8)


cdef uint32_t ev_take(EventRing *r, Event *out, uint32_t room) noexcept nogil:
    """Consumer: up to `room` events, oldest first.  Fewer than `room`: the ring is empty,
    and a producer that adds to it from now on owes a wake-up."""
    cdef uint32_t t = r.tail, h, n = 0
    while True:
        h = pyxsw_load_acq32(&r.head)
        while t != h and n < room:
            out[n] = r.ev[t & (EV_RING - 1)]
            t += 1
            n += 1
        pyxsw_store_rel32(&r.tail, t)
        pyxsw_fence_seq()
        if n == room or pyxsw_load_acq32(&r.head) == t:
            return n


cdef void ev_clear_fd(int efd) noexcept nogil:
    """Consumer: reset the eventfd before draining (a wake-up after this stays pending)."""
    cdef uint64_t v
    if efd >= 0:
        read(efd, &v, 8)


cdef tuple ev_fdb_tuple(const Event *e):
    """An FDB event as Python sees it: ("learn"|"move", mac, vlan, port, old port)."""
    return ("learn" if e.kind == EV_LEARN else "move", int_to_mac(e.d.fdb.key),
            <int>(e.d.fdb.key >> 48), e.d.fdb.port, e.d.fdb.old_port)
