# The worker loop: the packet path.
#
# Worker q owns queue q of every port: it is the only thread that touches those sockets'
# four rings, which is what lets a TX ring have a single producer with no lock.  One pass of
# the loop, for each port in turn:
#
#   reap the completion ring into the worker's frame cache,
#   top the fill ring up to its target (fill-ring starvation, not CPU, is what loses frames
#   in copy mode),
#   take a burst from the RX ring and decide each frame: unicast (stage its address on the
#   egress port: no copy), flood (stage it on every other port that is up; only the second
#   and later copies cost a memcpy), or drop (back to the cache, counted),
#   write the staged addresses to the TX rings in one reserve/submit per egress port, and
#   kick the kernel when the ring asks for it.  A full TX ring is a counted drop, not a stall.
#
# A frame larger than a UMEM frame (a jumbo frame, with multi-buffer AF_XDP) is a chain of
# descriptors, XDP_PKT_CONTD on all but the last.  It moves as a unit: decided by its first
# descriptor, staged whole, written to a TX ring whole or dropped whole, copied whole for a
# flood, a mirror or a capture.  Counters of packets count frames; the frames_* flow counters
# count descriptors (UMEM frames), so the accounting stays exact.
#
# What a worker reads of the switch's configuration (which ports exist, their kind, which are
# up) it copies into its own struct when the switch's generation number changes, so the
# per-frame code reads only worker-local memory plus the FDB.  Learning calls the FDB's
# fdb_learn(); what the control side must hear of goes into the worker's event ring.  The
# loop bumps `epoch` every pass and sets `parked` while it sleeps: the management side uses those as grace periods before it
# frees a table or a socket that a worker might still be looking at.

# ---------------------------------------------------------------------------- frame cache

cdef inline uint32_t cache_fill(Worker *w, uint32_t want) noexcept nogil:
    """Make at least `want` frames available in the cache if the pool has them."""
    cdef uint32_t room
    if w.ncache < want:
        room = w.cache_max - w.ncache
        room = pool_get(&w.sw.umem.pool, &w.cache[w.ncache],
                        room if room < want - w.ncache + CACHE_CHUNK else want - w.ncache + CACHE_CHUNK)
        w.ncache += room
        w.c[WORKER_FRAMES_FROM_POOL] += room
    return w.ncache


cdef inline void cache_put(Worker *w, uint64_t addr) noexcept nogil:
    if pyxsw_unlikely(w.ncache >= w.cache_max):
        w.ncache -= CACHE_CHUNK
        pool_put(&w.sw.umem.pool, &w.cache[w.ncache], CACHE_CHUNK)
        w.c[WORKER_FRAMES_TO_POOL] += CACHE_CHUNK
    if PYXSW_DEBUG:
        pyxsw_check(addr < w.sw.umem.area_size or w.sw.umem.area == NULL,   # (tests: no UMEM)
                    "a frame address outside the UMEM")
    w.cache[w.ncache] = addr & w.sw.umem.frame_mask
    w.ncache += 1


cdef inline uint64_t cache_take(Worker *w) noexcept nogil:
    """A free frame, or (uint64_t)-1 when the whole UMEM is in use."""
    if pyxsw_unlikely(w.ncache == 0):
        if cache_fill(w, 1) == 0:
            w.c[WORKER_POOL_EMPTY] += 1
            return <uint64_t>-1
    w.ncache -= 1
    return w.cache[w.ncache]


# ---------------------------------------------------------------------------- configuration

cdef void worker_apply_gen(Worker *w) noexcept nogil:
    """Copy the switch's port table into the worker (on a generation change), again if a
    port's VLANs were being written meanwhile (sw.cfg_seq)."""
    cdef Sw *sw = w.sw
    cdef uint32_t seq
    w.gen = pyxsw_load_rlx32(&sw.gen)
    pyxsw_fence_seq()
    while True:
        seq = pyxsw_load_acq32(&sw.cfg_seq)
        if seq & 1:
            pyxsw_cpu_relax()
            continue
        worker_copy_ports(w)
        pyxsw_fence_acq()
        if pyxsw_load_rlx32(&sw.cfg_seq) == seq:
            return


cdef void worker_copy_ports(Worker *w) noexcept nogil:
    cdef Sw *sw = w.sw
    cdef int p
    cdef Port *pt
    w.nact = 0
    w.nup = 0
    w.npfd = 0
    w.ntaps = 0
    w.cap_snap = sw.cap_snap
    for p in range(MAX_PORTS):
        pt = &sw.ports[p]
        w.isup[p] = 0
        if pt.socks[w.q] != w.sock[p]:
            w.rx_skip[p] = 0            # a new socket owes no rest of an old frame
        w.sock[p] = NULL
        w.tap[p] = 0
        w.mdst[p] = 0
        w.mir_in[p] = 0
        w.mir_out[p] = 0
        if not pyxsw_load_int(&pt.active):
            continue
        if pt.tap or pt.mirror_in or pt.mirror_out or pt.mirror_dst:
            w.tap[p] = pt.tap if w.cap != NULL else 0
            w.mdst[p] = 1 if pt.mirror_dst else 0
            w.mir_in[p] = pt.mirror_in
            w.mir_out[p] = pt.mirror_out
            w.ntaps += 1
        w.kind[p] = pt.kind
        w.maxsegs[p] = pt.max_segs if 0 < pt.max_segs < MAX_FRAGS else MAX_FRAGS
        w.sock[p] = pt.socks[w.q]
        w.act[w.nact] = p
        w.nact += 1
        if w.sock[p] != NULL:
            w.pfd[w.npfd].fd = w.sock[p].fd
            w.pfd[w.npfd].events = POLLIN
            w.npfd += 1
        w.fwd_res[p] = 1 if pt.forward_reserved else 0
        w.vmode[p] = pt.vlan_mode
        w.vuntag[p] = pt.untagged
        memcpy(&w.vlans[p * VLAN_WORDS], pt.vlans, sizeof(pt.vlans))
        w.fl_allow[p] = 0
        if pt.flood_limit:
            # this worker's share (queues split a port's traffic), per 100 ms, at least 1;
            # rounded up in 64 bits: in 32 a limit near 2**32 wrapped to 1 flood per window
            w.fl_allow[p] = <uint32_t>max(<uint64_t>1, (<uint64_t>pt.flood_limit + 10 * sw.nworkers - 1)
                                          // <uint64_t>(10 * sw.nworkers))
        if pyxsw_load_int(&pt.up) and not pt.mirror_dst:    # a mirror's output forwards nothing
            w.isup[p] = 1
            w.upl[w.nup] = p
            w.nup += 1
    w.pfd[w.npfd].fd = w.efd
    w.pfd[w.npfd].events = POLLIN
    w.npfd += 1


# ---------------------------------------------------------------------------- forwarding decision

cdef inline void fdb_event(Worker *w, uint8_t kind, uint64_t key, uint16_t port,
                           uint16_t old) noexcept nogil:
    cdef Event *e = ev_reserve(&w.events)
    if e != NULL:
        e.kind = kind
        e.d.fdb.key = key
        e.d.fdb.port = port
        e.d.fdb.old_port = old
        ev_commit(&w.events)


cdef inline void learn(Worker *w, FdbTable *tab, uint64_t src, uint16_t p, uint32_t now) noexcept nogil:
    cdef uint16_t at = 0xffff
    cdef int r = fdb_learn(&w.sw.fdb, tab, src, p, now, &at)
    if pyxsw_likely(r == FDB_R_SAME):
        return
    if r == FDB_R_NEW:
        w.c[WORKER_LEARNED] += 1
        fdb_event(w, EV_LEARN, src, p, p)
    elif r == FDB_R_MOVED:
        w.c[WORKER_MOVED] += 1
        fdb_event(w, EV_MOVE, src, p, at)
    elif r == FDB_R_BUSY:
        w.c[WORKER_LEARN_BUSY] += 1
    elif r == FDB_R_FULL:
        w.c[WORKER_LEARN_FULL] += 1
    elif r == FDB_R_LIMIT:
        w.c[WORKER_LEARN_LIMITED] += 1


# Reserved link-local groups, 01:80:c2:00:00:00 to 0f (wire bytes read little-endian, the last
# nibble masked): STP, MAC control (PAUSE), LACP, 802.1X, LLDP...  IEEE 802.1Q bridges never
# forward them, nor by default do the Linux bridge and Open vSwitch; a port's forward_reserved
# floods them like other multicast, except PAUSE (:01), which stops at the link it was sent on.
cdef uint64_t RESERVED_MASK = 0xf0ffffffffffULL
cdef uint64_t RESERVED_GROUP = 0x000000c28001ULL
cdef uint64_t PAUSE_GROUP = 0x010000c28001ULL


cdef inline int classify(Worker *w, const uint8_t *pkt, uint32_t ln, uint16_t p,
                         Frame *f) noexcept nogil:
    """The frame's VLAN on ingress port p, and its tag (f.tagged, f.tci): 0, or FWD_RUNT or
    FWD_VLAN.  Untagged and priority-tagged (VID 0) frames belong to the port's untagged VLAN
    (access VLAN, or a trunk's native one); a tagged frame to its VID, on a trunk that
    allows it; an access port takes no VID.  Other outer tags (802.1ad) are payload."""
    cdef uint16_t vid
    f.tagged = pkt[12] == 0x81 and pkt[13] == 0x00
    if not f.tagged:
        f.tci = 0
        f.vlan = w.vuntag[p]
        return FWD_VLAN if f.vlan == 0 else 0
    if pyxsw_unlikely(ln < 18):
        return FWD_RUNT
    f.tci = (<uint16_t>pkt[14] << 8) | pkt[15]
    vid = f.tci & 0xfff
    if vid == 0:
        f.vlan = w.vuntag[p]
        return FWD_VLAN if f.vlan == 0 else 0
    if w.vmode[p] != VLAN_TRUNK or not port_carries(&w.vlans[p * VLAN_WORDS], vid):
        return FWD_VLAN
    f.vlan = vid
    return 0


cdef inline int decide(Worker *w, FdbTable *tab, const uint8_t *pkt, uint32_t ln, uint16_t p,
                       uint32_t now, Frame *f) noexcept nogil:
    """Classify the frame into its VLAN (f), learn its source there, then: an egress port
    index, FWD_FLOOD, FWD_RUNT, FWD_FILTER, FWD_RESERVED or FWD_VLAN."""
    cdef uint64_t dst, src, vkey
    cdef uint16_t e
    cdef int r
    if pyxsw_unlikely(ln < 14):
        return FWD_RUNT
    r = classify(w, pkt, ln, p, f)
    if pyxsw_unlikely(r != 0):
        return r
    vkey = <uint64_t>f.vlan << 48
    dst = pyxsw_load_mac8(pkt) & MAC_MASK
    src = pyxsw_load_mac8(pkt + 6) & MAC_MASK
    if not (src & 1):           # never learn a multicast source
        learn(w, tab, src | vkey, p, now)
    if dst & 1:                 # the I/G bit: broadcast and multicast
        if pyxsw_unlikely((dst & RESERVED_MASK) == RESERVED_GROUP) and (
                not w.fwd_res[p] or dst == PAUSE_GROUP):
            return FWD_RESERVED
        return FWD_FLOOD
    if (fdb_find(tab, dst | vkey, &e) == NULL or not w.isup[e]
            or not port_carries(&w.vlans[e * VLAN_WORDS], f.vlan)):
        return FWD_FLOOD
    if e == p:
        return FWD_FILTER
    return e


# ---------------------------------------------------------------------------- rings

cdef inline void stage(Worker *w, uint16_t e, const uint64_t *a, const uint32_t *l,
                       uint32_t k) noexcept nogil:
    """Stage a frame of k descriptors (addresses a, lengths l) on egress port e; a frame in
    more descriptors than e's device sends (zero-copy: its zc-max-segs) is dropped there."""
    cdef uint32_t n = w.ntx[e], j
    if pyxsw_unlikely(k > w.maxsegs[e]):
        drop(w, a, k)
        w.st[e].c[PORT_TX_DROPPED] += 1
        return
    if PYXSW_DEBUG:
        # a burst stages at most its descriptors per egress port; mirror copies check their
        # own room
        pyxsw_check(n + k <= TX_SLOTS, "more frames staged on a port than a burst holds")
    if n == 0:
        w.dirty[w.ndirty] = e
        w.ndirty += 1
    for j in range(k):
        w.txa[e * TX_SLOTS + n + j] = a[j]
        w.txl[e * TX_SLOTS + n + j] = (l[j] & TXL_LEN) | (TXL_CONTD if j + 1 < k else 0)
    w.ntx[e] = n + k


cdef inline void drop(Worker *w, const uint64_t *a, uint32_t k) noexcept nogil:
    """A frame's descriptors back to the cache."""
    cdef uint32_t j
    for j in range(k):
        cache_put(w, a[j])


# ---------------------------------------------------------------------------- capture and mirrors
#
# Only while a capture runs or a mirror is set (w.ntaps): a captured frame is copied with its
# time into the worker's capture ring (full: counted lost, never waited for); a mirrored one
# into a free frame staged on the mirror's output port (no frame or no room: counted as the
# output's tx_dropped).  Received frames are taken as they arrived, sent ones as they leave.

cdef void cap_put(Worker *w, uint16_t p, uint8_t dir, const uint64_t *a, const uint32_t *l,
                  uint32_t k, uint32_t ln) noexcept nogil:
    """Frame (a, l, k) of ln bytes into the capture ring."""
    cdef CapRing *r = w.cap
    cdef CapRec *rec
    cdef timespec ts
    cdef uint32_t h = r.head, keep = ln, j, at, part
    if h - pyxsw_load_acq32(&r.tail) >= CAP_RING:
        w.c[WORKER_CAPTURE_LOST] += 1
        w.st[p].c[PORT_CAPTURE_LOST] += 1     # whose capture lost it: the port's
        return
    rec = <CapRec *>(r.recs + <uint64_t>(h & (CAP_RING - 1)) * r.slot)
    if keep > w.cap_snap:
        keep = w.cap_snap
    if keep > r.slot - sizeof(CapRec):
        keep = r.slot - sizeof(CapRec)
    clock_gettime(CLOCK_REALTIME, &ts)
    rec.ts_ns = <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec
    rec.len = ln
    rec.caplen = keep
    rec.port = p
    rec.dir = dir
    at = 0
    for j in range(k):
        if at >= keep:
            break
        part = l[j] & TXL_LEN
        if part > keep - at:
            part = keep - at
        memcpy(<uint8_t *>rec + sizeof(CapRec) + at, w.sw.umem.area + a[j], part)
        at += part
    pyxsw_store_rel32(&r.head, h + 1)
    pyxsw_fence_seq()
    if pyxsw_load_acq32(&r.tail) == h:
        w.events.signal = True          # ev_flush wakes the control side once per pass
    w.c[WORKER_CAPTURED] += 1


cdef bint take_frames(Worker *w, uint64_t *c, uint32_t k) noexcept nogil:
    """k free frames into c, or none (False)."""
    cdef uint32_t j
    for j in range(k):
        c[j] = cache_take(w)
        if c[j] == <uint64_t>-1:
            drop(w, c, j)
            return False
    return True


cdef void mirror_copy(Worker *w, uint16_t o, const uint64_t *a, const uint32_t *l,
                      uint32_t k) noexcept nogil:
    cdef uint64_t c[MAX_FRAGS]
    cdef uint32_t cl[MAX_FRAGS]
    cdef uint32_t j
    if w.sock[o] == NULL or w.ntx[o] + k > TX_SLOTS or not take_frames(w, c, k):
        w.st[o].c[PORT_TX_DROPPED] += 1
        return
    for j in range(k):
        cl[j] = l[j] & TXL_LEN
        c[j] += COPY_OFF
        memcpy(w.sw.umem.area + c[j], w.sw.umem.area + a[j], cl[j])
    stage(w, o, c, cl, k)
    w.c[WORKER_MIRRORED] += 1


cdef void tap_frame(Worker *w, uint16_t p, uint8_t dir, const uint64_t *a, const uint32_t *l,
                    uint32_t k, uint32_t ln) noexcept nogil:
    """Frame (a, l, k) of ln bytes, received on p (TAP_IN) or sent out of it (TAP_OUT): to
    the capture ring and the mirrors that want it."""
    cdef uint64_t m = w.mir_in[p] if dir == TAP_IN else w.mir_out[p]
    if w.tap[p] & dir:
        cap_put(w, p, dir, a, l, k, ln)
    while m:
        mirror_copy(w, <uint16_t>pyxsw_ctz64(m), a, l, k)
        m &= m - 1


cdef inline void kick_tx(Worker *w, Sock *s) noexcept nogil:
    # In copy mode each kick transmits up to the socket's TX budget; errors such as EAGAIN
    # (the budget ran out) or ENOBUFS only mean "kick again later", which the next pass does.
    if xsk_ring_prod__needs_wakeup(&s.tx):
        sendto(s.fd, NULL, 0, MSG_DONTWAIT, NULL, 0)
        w.c[WORKER_TX_KICKS] += 1


cdef void flush_tx(Worker *w) noexcept nogil:
    cdef int j
    cdef uint16_t e
    cdef uint32_t n, got, i, i0, frames, idx = 0
    cdef uint64_t nbytes
    cdef Sock *s
    cdef xdp_desc *d
    cdef uint64_t *a
    cdef uint32_t *l
    j = 0
    # (a while: a mirror's output may join the list while it is walked)
    while j < w.ndirty:
        e = w.dirty[j]
        j += 1
        n = w.ntx[e]
        w.ntx[e] = 0
        s = w.sock[e]
        a = &w.txa[e * TX_SLOTS]
        l = &w.txl[e * TX_SLOTS]
        got = xsk_ring_prod__reserve(&s.tx, n, &idx)
        if pyxsw_unlikely(got == 0):
            got = xsk_prod_nb_free(&s.tx, n)
            if got > n:
                got = n
            while got and l[got - 1] & TXL_CONTD:   # whole frames only, never half of one
                got -= 1
            if got:
                xsk_ring_prod__reserve(&s.tx, got, &idx)
        nbytes = 0
        frames = 0
        for i in range(got):
            d = xsk_ring_prod__tx_desc(&s.tx, idx + i)
            d.addr = a[i]
            d.len = l[i] & TXL_LEN
            d.options = XDP_PKT_CONTD if l[i] & TXL_CONTD else 0
            nbytes += d.len
            frames += not (l[i] & TXL_CONTD)
        if got:
            xsk_ring_prod__submit(&s.tx, got)
            w.c[WORKER_FRAMES_TO_TX] += got
            w.st[e].c[PORT_TX_PACKETS] += frames
            w.st[e].c[PORT_TX_BYTES] += nbytes
            if pyxsw_unlikely(w.ntaps != 0) and (w.tap[e] & TAP_OUT or w.mir_out[e]):
                i0 = 0                  # the bytes stay put until this worker reaps them
                nbytes = 0
                for i in range(got):
                    nbytes += l[i] & TXL_LEN
                    if not (l[i] & TXL_CONTD):
                        tap_frame(w, e, TAP_OUT, &a[i0], &l[i0], i + 1 - i0, <uint32_t>nbytes)
                        i0 = i + 1
                        nbytes = 0
            kick_tx(w, s)
        for i in range(got, n):         # TX ring full: drop and count, never wait
            cache_put(w, a[i])
            if not (l[i] & TXL_CONTD):
                w.st[e].c[PORT_TX_DROPPED] += 1
    w.ndirty = 0


cdef inline void reap(Worker *w, Sock *s) noexcept nogil:
    cdef uint32_t idx = 0, i
    cdef uint32_t n = xsk_ring_cons__peek(&s.comp, w.sw.umem.ring_size, &idx)
    for i in range(n):
        cache_put(w, xsk_ring_cons__comp_addr(&s.comp, idx + i)[0])
    if n:
        xsk_ring_cons__release(&s.comp, n)
        w.c[WORKER_FRAMES_FROM_COMPLETION] += n
    # Frames left in the TX ring by an earlier kick that ran out of budget.
    if s.tx.cached_prod != pyxsw_load_acq32(s.tx.consumer):
        kick_tx(w, s)


cdef inline void refill(Worker *w, Sock *s) noexcept nogil:
    cdef uint32_t size = s.fill.size
    cdef uint32_t target = w.sw.umem.fill_target
    cdef uint32_t free_ = xsk_prod_nb_free(&s.fill, size)
    cdef uint32_t used = size - free_
    cdef uint32_t need, i, idx = 0
    if used >= target:
        return
    need = target - used
    if cache_fill(w, need) < need:
        need = w.ncache
        if need == 0:
            w.c[WORKER_POOL_EMPTY] += 1
            return
    xsk_ring_prod__reserve(&s.fill, need, &idx)
    for i in range(need):
        w.ncache -= 1
        xsk_ring_prod__fill_addr(&s.fill, idx + i)[0] = w.cache[w.ncache]
    xsk_ring_prod__submit(&s.fill, need)
    w.c[WORKER_FRAMES_TO_FILL] += need


cdef inline void set_vid(uint8_t *tag, uint16_t tci, uint16_t vlan) noexcept nogil:
    """The VID of a tag (its TCI at tag[0..1]) set to vlan, PCP and DEI kept."""
    tci = (tci & 0xf000) | vlan
    tag[0] = tci >> 8
    tag[1] = tci & 0xff


cdef inline uint32_t pad(uint8_t *pkt, uint32_t ln) noexcept nogil:
    """A frame shortened by a pop, padded with zeros to 60 bytes as a NIC would (never with
    whatever the buffer held before)."""
    if ln < 60:
        memset(pkt + ln, 0, 60 - ln)
        return 60
    return ln


cdef inline uint64_t retag(Worker *w, uint16_t e, uint64_t addr, uint32_t *ln,
                           const Frame *f, bint whole) noexcept nogil:
    """The frame whose first descriptor is (addr, ln) made what egress port e sends, in
    place: its tag popped (e sends the VLAN untagged), pushed into the frame's headroom (e
    sends it tagged), or its VID set (priority-tagged in, tagged out).  The new address, or
    (uint64_t)-1 when a push finds no headroom.  whole: the descriptor is the whole frame (a
    chain is never short enough to pad)."""
    cdef uint8_t *pkt = w.sw.umem.area + addr
    cdef bint want = f.vlan != w.vuntag[e]
    if f.tagged == want:
        if want and (f.tci & 0xfff) != f.vlan:
            set_vid(pkt + 14, f.tci, f.vlan)
        return addr
    if f.tagged:                                # pop: the MACs move up over the tag
        memmove(pkt + 4, pkt, 12)
        ln[0] = pad(pkt + 4, ln[0] - 4) if whole else ln[0] - 4
        return addr + 4
    if pyxsw_unlikely((addr & ~w.sw.umem.frame_mask) < 4):
        return <uint64_t>-1
    memmove(pkt - 4, pkt, 12)                   # push: the MACs move down, the tag after them
    pkt[8] = 0x81
    pkt[9] = 0x00
    pkt[10] = f.vlan >> 8                       # PCP 0, DEI 0
    pkt[11] = f.vlan & 0xff
    ln[0] += 4
    return addr - 4


cdef inline uint32_t copy_for(Worker *w, uint16_t e, const uint8_t *src, uint32_t ln,
                              const Frame *f, uint8_t *dst, bint whole) noexcept nogil:
    """A flood copy of the frame at src (its first descriptor, of ln bytes) into dst as
    egress port e sends it (tagged or not); its length."""
    cdef bint want = f.vlan != w.vuntag[e]
    if f.tagged == want:
        memcpy(dst, src, ln)
        if want and (f.tci & 0xfff) != f.vlan:
            set_vid(dst + 14, f.tci, f.vlan)
        return ln
    memcpy(dst, src, 12)
    if f.tagged:                                # untagged copy of a tagged frame
        memcpy(dst + 12, src + 16, ln - 16)
        return pad(dst, ln - 4) if whole else ln - 4
    dst[12] = 0x81                              # tagged copy of an untagged frame
    dst[13] = 0x00
    dst[14] = f.vlan >> 8
    dst[15] = f.vlan & 0xff
    memcpy(dst + 16, src + 12, ln - 12)
    return ln + 4


cdef void flood(Worker *w, uint16_t p, uint64_t *a, uint32_t *l, uint32_t k,
                const Frame *f) noexcept nogil:
    """Stage a frame (a, l, k) on every up port of its VLAN but its ingress, tagged or
    untagged as each port sends it; copies only for the 2nd and later, the original (retagged
    in place) last."""
    cdef int j
    cdef uint32_t i
    cdef uint16_t e, first = 0xffff
    cdef uint64_t c[MAX_FRAGS]
    cdef uint32_t cl[MAX_FRAGS]
    cdef uint8_t *area = w.sw.umem.area
    for j in range(w.nup):
        e = w.upl[j]
        if (e == p or w.sock[e] == NULL
                or not port_carries(&w.vlans[e * VLAN_WORDS], f.vlan)):
            continue
        if first == 0xffff:
            first = e
            continue            # the original goes out last, after every copy is made
        if not take_frames(w, c, k):
            w.st[e].c[PORT_TX_DROPPED] += 1
            continue
        c[0] += COPY_OFF
        cl[0] = copy_for(w, e, area + a[0], l[0], f, area + c[0], k == 1)
        for i in range(1, k):
            c[i] += COPY_OFF
            cl[i] = l[i]
            memcpy(area + c[i], area + a[i], l[i])
        stage(w, e, c, cl, k)
    if first == 0xffff:
        drop(w, a, k)           # nobody else to send it to
        return
    c[0] = retag(w, first, a[0], &l[0], f, k == 1)
    if pyxsw_unlikely(c[0] == <uint64_t>-1):
        drop(w, a, k)
        w.st[first].c[PORT_TX_DROPPED] += 1
        return
    a[0] = c[0]
    stage(w, first, a, l, k)


cdef inline void rx_frame(Worker *w, uint16_t p, FdbTable *tab, uint32_t now, uint64_t *a,
                          uint32_t *l, uint32_t k, uint32_t ln, bint taps) noexcept nogil:
    """Forward, flood or drop one received frame: k descriptors (a, l), ln bytes."""
    cdef PortStats *st = &w.st[p]
    cdef Frame f
    cdef uint64_t addr
    cdef int e
    st.c[PORT_RX_PACKETS] += 1
    st.c[PORT_RX_BYTES] += ln
    if pyxsw_unlikely(taps):
        if w.mdst[p]:                   # a mirror's output forwards nothing (a capture sees it)
            if w.tap[p] & TAP_IN:
                cap_put(w, p, TAP_IN, a, l, k, ln)
            st.c[PORT_MIRROR_DROPPED] += 1
            drop(w, a, k)
            return
        tap_frame(w, p, TAP_IN, a, l, k, ln)
    e = decide(w, tab, w.sw.umem.area + a[0], l[0], p, now, &f)
    if pyxsw_likely(e >= 0):
        addr = retag(w, <uint16_t>e, a[0], &l[0], &f, k == 1)
        if pyxsw_unlikely(addr == <uint64_t>-1):
            drop(w, a, k)
            w.st[e].c[PORT_TX_DROPPED] += 1
            return
        a[0] = addr
        stage(w, <uint16_t>e, a, l, k)
    elif e == FWD_FLOOD:
        if pyxsw_unlikely(w.fl_allow[p] != 0):
            if w.fl_used[p] >= w.fl_allow[p]:
                st.c[PORT_FLOOD_LIMITED] += 1
                drop(w, a, k)
                return
            w.fl_used[p] += 1
        st.c[PORT_FLOODED] += 1
        flood(w, p, a, l, k, &f)
    else:
        if e == FWD_RUNT:
            st.c[PORT_RUNTS] += 1
        elif e == FWD_RESERVED:
            st.c[PORT_RESERVED_DROPPED] += 1
        elif e == FWD_VLAN:
            st.c[PORT_VLAN_DROPPED] += 1
        else:
            st.c[PORT_FILTERED] += 1
        drop(w, a, k)


cdef uint32_t rx_chain(Worker *w, Sock *s, uint16_t p, FdbTable *tab, uint32_t now,
                       uint32_t idx, uint32_t i, uint32_t n, bint taps) noexcept nogil:
    """The frame whose descriptors start at RX slot idx + i: gathered and forwarded, or
    dropped whole when it is longer than MAX_FRAGS descriptors (counted oversize_dropped; a
    frame that runs past the burst's n descriptors is such a frame: rx_skip drops its rest
    as it comes).  Where the next frame starts."""
    cdef const xdp_desc *d
    cdef uint32_t k = 0, ln = 0
    cdef bint whole = False
    while i < n:
        d = xsk_ring_cons__rx_desc(&s.rx, idx + i)
        i += 1
        if PYXSW_DEBUG:
            pyxsw_check(d.addr + d.len <= w.sw.umem.area_size, "an RX descriptor outside the UMEM")
        if d.len == 0 and k:
            # an empty fragment (a zero-copy driver's) carries nothing, and the kernel
            # refuses an empty TX descriptor (the whole frame then never completes)
            cache_put(w, d.addr)
            if not (d.options & XDP_PKT_CONTD):
                whole = True
                break
            continue
        if k < MAX_FRAGS:
            w.cha[k] = d.addr
            w.chl[k] = d.len
        else:
            cache_put(w, d.addr)        # too long: dropped as it is walked
        k += 1
        ln += d.len
        if not (d.options & XDP_PKT_CONTD):
            whole = True
            break
    if pyxsw_likely(whole and k <= MAX_FRAGS):
        rx_frame(w, p, tab, now, w.cha, w.chl, k, ln, taps)
        return i
    w.rx_skip[p] = not whole
    w.st[p].c[PORT_RX_PACKETS] += 1     # received, as a runt is, and dropped
    w.st[p].c[PORT_RX_BYTES] += ln
    w.st[p].c[PORT_OVERSIZE_DROPPED] += 1
    drop(w, w.cha, k if k < MAX_FRAGS else MAX_FRAGS)
    return i


cdef uint32_t rx_skip(Worker *w, Sock *s, uint16_t p, uint32_t idx, uint32_t n) noexcept nogil:
    """Drop the rest of an oversize frame (see rx_chain) from the start of a burst; the
    descriptors it took."""
    cdef const xdp_desc *d
    cdef uint32_t i = 0
    while i < n:
        d = xsk_ring_cons__rx_desc(&s.rx, idx + i)
        i += 1
        cache_put(w, d.addr)
        if not (d.options & XDP_PKT_CONTD):
            w.rx_skip[p] = 0
            break
    return i


cdef uint32_t rx_whole(Sock *s, uint32_t idx, uint32_t n) noexcept nogil:
    """A burst of n descriptors whose last one is not a frame's last: take up to the frame's
    end (the kernel publishes a frame's descriptors together), MAX_FRAGS - 1 more at most.
    The burst's new length."""
    cdef uint32_t more = 0, j = 0
    while more < MAX_FRAGS - 1 and xsk_ring_cons__peek(&s.rx, 1, &j) == 1:
        more += 1
        if not (xsk_ring_cons__rx_desc(&s.rx, j).options & XDP_PKT_CONTD):
            break
    return n + more


cdef uint32_t rx_burst(Worker *w, Sock *s, uint16_t p, FdbTable *tab, uint32_t now) noexcept nogil:
    cdef uint32_t idx = 0, i = 0
    cdef uint32_t n = xsk_ring_cons__peek(&s.rx, w.sw.batch, &idx)
    cdef const xdp_desc *d
    cdef uint64_t addr
    cdef uint32_t ln
    cdef bint taps = w.ntaps != 0 and (w.tap[p] & TAP_IN or w.mir_in[p] or w.mdst[p])
    if n == 0:
        return 0
    if pyxsw_unlikely(xsk_ring_cons__rx_desc(&s.rx, idx + n - 1).options & XDP_PKT_CONTD):
        n = rx_whole(s, idx, n)
    # The kernel wrote these frames on another core: ask for all their headers at once so
    # the cache misses overlap instead of stalling the decision loop one frame at a time.
    for i in range(n):
        pyxsw_prefetch(w.sw.umem.area + xsk_ring_cons__rx_desc(&s.rx, idx + i).addr)
    i = 0
    if pyxsw_unlikely(w.rx_skip[p]):
        i = rx_skip(w, s, p, idx, n)
    while i < n:
        d = xsk_ring_cons__rx_desc(&s.rx, idx + i)
        if pyxsw_unlikely(d.options & XDP_PKT_CONTD):
            i = rx_chain(w, s, p, tab, now, idx, i, n, taps)
            continue
        i += 1
        addr = d.addr
        ln = d.len
        if PYXSW_DEBUG:
            pyxsw_check(addr + ln <= w.sw.umem.area_size, "an RX descriptor outside the UMEM")
        rx_frame(w, p, tab, now, &addr, &ln, 1, ln, taps)
    xsk_ring_cons__release(&s.rx, n)
    w.c[WORKER_FRAMES_FROM_RX] += n
    flush_tx(w)
    return n


# ---------------------------------------------------------------------------- the loop

cdef void worker_sleep(Worker *w) noexcept nogil:
    cdef uint64_t v
    cdef int j, timeout = SLEEP_MS
    cdef Sock *s
    # A TX ring the kernel has not emptied (the egress queue was busy) needs another kick
    # soon, and no RX event may come to give one: nap briefly instead of sleeping.
    for j in range(w.nact):
        s = w.sock[w.act[j]]
        if s != NULL and s.tx.cached_prod != pyxsw_load_acq32(s.tx.consumer):
            timeout = 1
            break
    pyxsw_store_int(&w.parked, 1)
    poll(w.pfd, w.npfd, timeout)
    pyxsw_store_int(&w.parked, 0)
    w.c[WORKER_WAKEUPS] += 1
    if w.pfd[w.npfd - 1].revents:
        read(w.efd, &v, 8)


cdef void worker_idle(Worker *w) noexcept nogil:
    cdef int j, mode = pyxsw_load_int(&w.mode)
    cdef Sock *s
    # released: a reader that sees this count sees the pass's `loops` too (worker_counters)
    pyxsw_store_rel64(&w.c[WORKER_IDLE_LOOPS], w.c[WORKER_IDLE_LOOPS] + 1)
    if mode == MODE_POLL:
        # Busy polling: a receive call lets the kernel run the device's NAPI on this core
        # when the fill ring says the kernel is waiting for us.
        for j in range(w.nact):
            s = w.sock[w.act[j]]
            if s != NULL and xsk_ring_prod__needs_wakeup(&s.fill):
                recvfrom(s.fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)
                w.c[WORKER_RX_KICKS] += 1
        return
    w.idle_run += 1
    if mode == MODE_INTERRUPT or w.idle_run >= ADAPTIVE_SPINS:
        w.idle_run = 0
        worker_sleep(w)


cdef void worker_loop(Worker *w) noexcept nogil:
    cdef Sw *sw = w.sw
    cdef FdbTable *tab
    cdef uint32_t now, got
    cdef uint64_t window
    cdef timespec ts
    cdef int j
    cdef uint16_t p
    cdef Sock *s
    cdef uint64_t t0 = pyxsw_rdtsc(), t1
    while pyxsw_load_int(&w.running):
        pyxsw_store64(&w.epoch, w.epoch + 1)
        if w.gen != pyxsw_load_rlx32(&sw.gen):
            worker_apply_gen(w)
        tab = <FdbTable *>pyxsw_load_ptr(<void **>&sw.fdb.tab)
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        now = <uint32_t>ts.tv_sec
        window = <uint64_t>ts.tv_sec * 10 + <uint64_t>(ts.tv_nsec // 100000000)
        if window != w.fl_window:
            w.fl_window = window
            memset(w.fl_used, 0, sizeof(w.fl_used))
        got = 0
        for j in range(w.nact):
            p = w.act[j]
            if w.kind[p] == KIND_AFXDP:
                s = w.sock[p]
                reap(w, s)
                refill(w, s)
                got += rx_burst(w, s, p, tab, now)
            # KIND_VIRTUAL: nothing to receive
        ev_flush(&w.events)
        w.c[WORKER_LOOPS] += 1
        if PYXSW_DEBUG:
            pyxsw_check(w.ncache <= w.cache_max, "a worker cache over its bound")
            pyxsw_check(w.ncache == w.c[WORKER_FRAMES_FROM_POOL] - w.c[WORKER_FRAMES_TO_POOL]
                        + w.c[WORKER_FRAMES_FROM_RX] + w.c[WORKER_FRAMES_FROM_COMPLETION]
                        - w.c[WORKER_FRAMES_TO_FILL] - w.c[WORKER_FRAMES_TO_TX],
                        "frames lost or doubled in a worker's hands")
        if got:
            w.idle_run = 0
        else:
            worker_idle(w)
        # the pass's time (a sleep in poll(2) included): busy when it found frames, so that
        # busy_cycles / cycles is the share of its time the worker forwards (its headroom,
        # which a poll worker's 100% CPU never shows)
        t1 = pyxsw_rdtsc()
        w.c[WORKER_CYCLES] += t1 - t0
        if got:
            w.c[WORKER_BUSY_CYCLES] += t1 - t0
        t0 = t1
    pyxsw_store_int(&w.parked, 1)


# ---------------------------------------------------------------------------- life

cdef Worker *worker_new(Sw *sw, int q, int mode, uint32_t cache_max) noexcept nogil:
    """Worker q's state, parked (not running yet: it holds nothing); NULL without memory."""
    cdef Worker *w = <Worker *>calloc(1, sizeof(Worker))
    if w == NULL:
        return NULL
    w.sw = sw
    w.q = q
    w.running = 1
    w.parked = 1
    w.mode = mode
    w.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    w.gen = <uint32_t>-1
    w.cache_max = cache_max
    ev_init(&w.events, sw.events_fd)
    return w


cdef void worker_free(Worker *w) noexcept nogil:
    if w != NULL:
        if w.efd >= 0:
            close(w.efd)
        if w.cap != NULL:
            free(w.cap.recs)
            free(w.cap)
        free(w)


cdef void worker_wake(Worker *w) noexcept nogil:
    cdef uint64_t one = 1
    write(w.efd, &one, 8)


cdef void worker_counters(Worker *w, uint64_t *out) noexcept nogil:
    """Its counters into out[WORKER_COUNTERS], gauges and the event ring's losses included.
    idle_loops is read first, with acquire: a pass counts its loop before it counts it idle,
    so the copy never has more idle loops than loops."""
    cdef uint64_t idle = pyxsw_load_acq64(&w.c[WORKER_IDLE_LOOPS])
    memcpy(out, w.c, WORKER_COUNTERS * sizeof(uint64_t))
    out[WORKER_IDLE_LOOPS] = idle
    out[WORKER_CACHE] = w.ncache
    out[WORKER_EVENTS_LOST] = w.events.lost


# ---------------------------------------------------------------------------- grace periods

cdef void workers_epochs(Sw *sw, uint64_t *since) noexcept nogil:
    """Where every worker's loop is now (for workers_not_quiesced())."""
    cdef int q
    pyxsw_fence_seq()
    for q in range(sw.nworkers):
        since[q] = pyxsw_load64(&sw.workers[q].epoch)


cdef uint32_t workers_not_quiesced(Sw *sw, const uint64_t *since) noexcept nogil:
    """A bit per worker that has not passed a quiescent point since workers_epochs(): not
    asleep, still running, and still in the pass it was in.  0: a grace period has passed."""
    cdef uint32_t pending = 0
    cdef Worker *w
    cdef int q
    for q in range(sw.nworkers):
        w = sw.workers[q]
        if not (pyxsw_load_int(&w.parked) or not pyxsw_load_int(&w.running)
                or pyxsw_load64(&w.epoch) != since[q]):
            pending |= (<uint32_t>1) << q
    return pending
