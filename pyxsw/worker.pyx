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
# What a worker reads of the switch's configuration (which ports exist, which are up) it
# copies into its own struct when the switch's generation number changes, so the per-frame
# code reads only worker-local memory plus the FDB.  The loop bumps `epoch` every pass and
# sets `parked` while it sleeps: the management side uses those as grace periods before it
# frees a table or a socket that a worker might still be looking at.

cdef struct Sw

cdef enum:
    MODE_POLL = 0
    MODE_INTERRUPT = 1
    MODE_ADAPTIVE = 2

    FWD_FLOOD = -1      # broadcast, multicast, unknown unicast
    FWD_RUNT = -2       # shorter than an Ethernet header
    FWD_FILTER = -3     # destination sits on the ingress port
    FWD_RESERVED = -4   # to a reserved link-local group (01:80:c2:00:00:0x): not forwarded

    ADAPTIVE_SPINS = 2048   # empty passes before an adaptive worker sleeps
    EV_RING = 1024          # FDB events a worker can queue for the control thread
    EV_LEARN = 1
    EV_MOVE = 2
    SLEEP_MS = 1000         # poll(2) timeout: the eventfd wakes a sleeper sooner


cdef struct PortStats:      # one per (worker, port): written by that worker only
    uint64_t c[PORT_COUNTERS]   # indexed by PORT_* (pyxsw/counters.py's PORT table)


cdef struct FdbEvent:       # a MAC learned or moved, for the management plane's subscribers
    uint64_t key
    uint16_t port
    uint16_t old_port
    uint8_t kind            # EV_LEARN / EV_MOVE


cdef struct Sock:           # one AF_XDP socket: a (port, queue)
    xsk_ring_cons rx
    xsk_ring_prod tx
    xsk_ring_prod fill
    xsk_ring_cons comp
    xsk_socket *xsk
    int fd


cdef struct Port:
    int active              # sockets ready: workers poll and transmit on it
    int up                  # link up: part of the flood set and a unicast destination
    int ifindex
    uint32_t flood_limit    # flooded frames/s this port may cause; 0 = no limit
    int forward_reserved    # flood reserved link-local frames received here (else drop them)
    char name[16]
    xdp_program *prog
    int attach_mode         # XDP_MODE_NATIVE / XDP_MODE_SKB
    int xsks_map_fd
    int stats_map_fd
    Sock *socks[MAX_WORKERS]


cdef struct Worker:
    Sw *sw
    int q
    int running             # cleared by stop
    int mode                # MODE_*
    int parked              # 1 while asleep in poll(2): holds no FDB table or port pointer
    uint64_t epoch          # bumped every pass: a grace-period marker
    int efd                 # eventfd that wakes this worker from poll(2)
    uint32_t gen            # the switch generation last copied below
    int nact                # ports this worker polls (active ones)
    uint16_t act[MAX_PORTS]
    Sock *sock[MAX_PORTS]   # this worker's socket on each port (NULL when not active)
    int nup                 # the flood set: active ports whose link is up
    uint16_t upl[MAX_PORTS]
    uint8_t isup[MAX_PORTS]
    uint8_t fwd_res[MAX_PORTS]      # the ports' forward_reserved
    pollfd pfd[MAX_PORTS + 1]
    int npfd
    uint32_t idle_run       # consecutive empty passes (adaptive mode)
    # storm control: each worker lets a port flood its share of flood_limit per 100 ms
    uint32_t fl_allow[MAX_PORTS]    # floods per window for each port; 0 = no limit
    uint32_t fl_used[MAX_PORTS]     # floods in the current window
    uint64_t fl_window              # the current window (monotonic time / 100 ms)
    # frame cache: frames this worker owns and can hand out without a lock
    uint32_t ncache
    uint32_t cache_max
    uint64_t cache[CACHE_SIZE]
    # Counters, indexed by WORKER_* (pyxsw/counters.py's WORKER table): this worker writes,
    # anyone reads.  The frames_* ones are the frame flow through this worker: what came
    # into its hands and what left them; at the end of every pass `ncache` must equal the
    # balance (a debug build checks).  The cache slot is filled in by worker_counters().
    uint64_t c[WORKER_COUNTERS]
    PortStats st[MAX_PORTS]
    # FDB events: a single-producer (this worker) single-consumer (control thread) ring;
    # when it is full, events are counted as lost, never waited for
    uint32_t ev_head        # next slot the worker writes
    uint32_t ev_tail        # next slot the control thread reads
    FdbEvent ev[EV_RING]
    # burst scratch: frames staged per egress port
    int ndirty
    uint16_t dirty[MAX_PORTS]
    uint32_t ntx[MAX_PORTS]
    uint64_t txa[MAX_PORTS * MAX_BATCH]
    uint32_t txl[MAX_PORTS * MAX_BATCH]


cdef struct Sw:
    uint8_t *area           # the UMEM
    uint64_t area_size
    xsk_umem *umem
    xsk_ring_prod umem_fill # rings made with the UMEM; libxdp hands them to the first socket
    xsk_ring_cons umem_comp
    uint32_t frame_size
    uint64_t frame_mask     # addr & frame_mask is a frame's base address
    uint32_t nframes
    uint32_t ring_size
    uint32_t batch
    uint32_t fill_target    # frames kept in each fill ring
    Pool pool
    Fdb fdb
    int nworkers
    Worker *workers[MAX_WORKERS]
    uint32_t gen            # bumped whenever ports change: workers re-copy their view
    Port ports[MAX_PORTS]


# ---------------------------------------------------------------------------- frame cache

cdef inline uint32_t cache_fill(Worker *w, uint32_t want) noexcept nogil:
    """Make at least `want` frames available in the cache if the pool has them."""
    cdef uint32_t room
    if w.ncache < want:
        room = w.cache_max - w.ncache
        room = pool_get(&w.sw.pool, &w.cache[w.ncache],
                        room if room < want - w.ncache + CACHE_CHUNK else want - w.ncache + CACHE_CHUNK)
        w.ncache += room
        w.c[WORKER_FRAMES_FROM_POOL] += room
    return w.ncache


cdef inline void cache_put(Worker *w, uint64_t addr) noexcept nogil:
    if pyxsw_unlikely(w.ncache >= w.cache_max):
        w.ncache -= CACHE_CHUNK
        pool_put(&w.sw.pool, &w.cache[w.ncache], CACHE_CHUNK)
        w.c[WORKER_FRAMES_TO_POOL] += CACHE_CHUNK
    if PYXSW_DEBUG:
        pyxsw_check(addr < w.sw.area_size, "a frame address outside the UMEM")
    w.cache[w.ncache] = addr & w.sw.frame_mask
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
    """Copy the switch's port table into the worker (on a generation change)."""
    cdef Sw *sw = w.sw
    cdef int p
    cdef Port *pt
    w.gen = pyxsw_load_rlx32(&sw.gen)
    pyxsw_fence_seq()
    w.nact = 0
    w.nup = 0
    w.npfd = 0
    for p in range(MAX_PORTS):
        pt = &sw.ports[p]
        w.isup[p] = 0
        w.sock[p] = NULL
        if not pyxsw_load_int(&pt.active):
            continue
        w.sock[p] = pt.socks[w.q]
        w.act[w.nact] = p
        w.nact += 1
        if w.sock[p] != NULL:
            w.pfd[w.npfd].fd = w.sock[p].fd
            w.pfd[w.npfd].events = POLLIN
            w.npfd += 1
        w.fwd_res[p] = 1 if pt.forward_reserved else 0
        w.fl_allow[p] = 0
        if pt.flood_limit:
            # this worker's share (queues split a port's traffic), per 100 ms, at least 1;
            # rounded up in 64 bits: in 32 a limit near 2**32 wrapped to 1 flood per window
            w.fl_allow[p] = <uint32_t>max(1, (<uint64_t>pt.flood_limit + 10 * sw.nworkers - 1)
                                          // (10 * sw.nworkers))
        if pyxsw_load_int(&pt.up):
            w.isup[p] = 1
            w.upl[w.nup] = p
            w.nup += 1
    w.pfd[w.npfd].fd = w.efd
    w.pfd[w.npfd].events = POLLIN
    w.npfd += 1


# ---------------------------------------------------------------------------- forwarding decision

cdef void push_event(Worker *w, uint8_t kind, uint64_t key, uint16_t port, uint16_t old) noexcept nogil:
    cdef uint32_t h = w.ev_head
    cdef FdbEvent *e
    if h - pyxsw_load_acq32(&w.ev_tail) >= EV_RING:
        w.c[WORKER_EVENTS_LOST] += 1
        return
    e = &w.ev[h & (EV_RING - 1)]
    e.kind = kind
    e.key = key
    e.port = port
    e.old_port = old
    pyxsw_store_rel32(&w.ev_head, h + 1)


cdef inline void learn(Worker *w, FdbTable *tab, uint64_t src, uint16_t p, uint32_t now) noexcept nogil:
    cdef uint16_t at = 0xffff
    cdef FdbSlot *s = fdb_find(tab, src, &at)
    cdef Fdb *f = &w.sw.fdb
    cdef int r
    if pyxsw_likely(s != NULL and at == p):
        if s.seen != now:
            s.seen = now
        return
    if pthread_mutex_trylock(&f.lock) != 0:
        w.c[WORKER_LEARN_BUSY] += 1       # a writer is busy: the next frame from this MAC learns it
        return
    r = fdb_put_locked(f, src, p, now, 0)
    pthread_mutex_unlock(&f.lock)
    if r == FDB_R_NEW:
        w.c[WORKER_LEARNED] += 1
        push_event(w, EV_LEARN, src, p, p)
    elif r == FDB_R_MOVED:
        w.c[WORKER_MOVED] += 1
        push_event(w, EV_MOVE, src, p, at)
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


cdef inline int decide(Worker *w, FdbTable *tab, const uint8_t *pkt, uint32_t ln, uint16_t p,
                       uint32_t now) noexcept nogil:
    """Learn the source, then: an egress port index, FWD_FLOOD, FWD_RUNT, FWD_FILTER or
    FWD_RESERVED."""
    cdef uint64_t dst, src
    cdef uint16_t e
    if pyxsw_unlikely(ln < 14):
        return FWD_RUNT
    dst = pyxsw_load_mac8(pkt) & MAC_MASK
    src = pyxsw_load_mac8(pkt + 6) & MAC_MASK
    if not (src & 1):           # never learn a multicast source
        learn(w, tab, src, p, now)
    if dst & 1:                 # the I/G bit: broadcast and multicast
        if pyxsw_unlikely((dst & RESERVED_MASK) == RESERVED_GROUP) and (
                not w.fwd_res[p] or dst == PAUSE_GROUP):
            return FWD_RESERVED
        return FWD_FLOOD
    if fdb_find(tab, dst, &e) == NULL or not w.isup[e]:
        return FWD_FLOOD
    if e == p:
        return FWD_FILTER
    return e


# ---------------------------------------------------------------------------- rings

cdef inline void stage(Worker *w, uint16_t e, uint64_t addr, uint32_t ln) noexcept nogil:
    cdef uint32_t n = w.ntx[e]
    if n == 0:
        w.dirty[w.ndirty] = e
        w.ndirty += 1
    w.txa[e * MAX_BATCH + n] = addr
    w.txl[e * MAX_BATCH + n] = ln
    w.ntx[e] = n + 1


cdef inline void kick_tx(Worker *w, Sock *s) noexcept nogil:
    # In copy mode each kick transmits up to the socket's TX budget; errors such as EAGAIN
    # (the budget ran out) or ENOBUFS only mean "kick again later", which the next pass does.
    if xsk_ring_prod__needs_wakeup(&s.tx):
        sendto(s.fd, NULL, 0, MSG_DONTWAIT, NULL, 0)
        w.c[WORKER_TX_KICKS] += 1


cdef void flush_tx(Worker *w) noexcept nogil:
    cdef int j
    cdef uint16_t e
    cdef uint32_t n, got, i, idx = 0
    cdef uint64_t nbytes
    cdef Sock *s
    cdef xdp_desc *d
    cdef uint64_t *a
    cdef uint32_t *l
    for j in range(w.ndirty):
        e = w.dirty[j]
        n = w.ntx[e]
        w.ntx[e] = 0
        s = w.sock[e]
        a = &w.txa[e * MAX_BATCH]
        l = &w.txl[e * MAX_BATCH]
        got = xsk_ring_prod__reserve(&s.tx, n, &idx)
        if pyxsw_unlikely(got == 0):
            got = xsk_prod_nb_free(&s.tx, n)
            if got > n:
                got = n
            if got:
                xsk_ring_prod__reserve(&s.tx, got, &idx)
        nbytes = 0
        for i in range(got):
            d = xsk_ring_prod__tx_desc(&s.tx, idx + i)
            d.addr = a[i]
            d.len = l[i]
            d.options = 0
            nbytes += l[i]
        if got:
            xsk_ring_prod__submit(&s.tx, got)
            w.c[WORKER_FRAMES_TO_TX] += got
            w.st[e].c[PORT_TX_PACKETS] += got
            w.st[e].c[PORT_TX_BYTES] += nbytes
            kick_tx(w, s)
        for i in range(got, n):         # TX ring full: drop and count, never wait
            cache_put(w, a[i])
            w.st[e].c[PORT_TX_DROPPED] += 1
    w.ndirty = 0


cdef inline void reap(Worker *w, Sock *s) noexcept nogil:
    cdef uint32_t idx = 0, i
    cdef uint32_t n = xsk_ring_cons__peek(&s.comp, w.sw.ring_size, &idx)
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
    cdef uint32_t target = w.sw.fill_target
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


cdef void flood(Worker *w, uint16_t p, uint64_t addr, uint32_t ln) noexcept nogil:
    """Stage a frame on every up port but its ingress; copies only for the 2nd and later."""
    cdef int j
    cdef uint16_t e
    cdef uint64_t c
    cdef bint orig_used = False
    cdef const uint8_t *src = w.sw.area + addr
    for j in range(w.nup):
        e = w.upl[j]
        if e == p or w.sock[e] == NULL:
            continue
        if not orig_used:
            orig_used = True
            continue            # the original goes out last, after every copy is made
        c = cache_take(w)
        if c == <uint64_t>-1:
            w.st[e].c[PORT_TX_DROPPED] += 1
            continue
        memcpy(w.sw.area + c, src, ln)
        stage(w, e, c, ln)
    if not orig_used:
        cache_put(w, addr)      # nobody else to send it to
        return
    for j in range(w.nup):
        e = w.upl[j]
        if e != p and w.sock[e] != NULL:
            stage(w, e, addr, ln)
            return


cdef uint32_t rx_burst(Worker *w, Sock *s, uint16_t p, FdbTable *tab, uint32_t now) noexcept nogil:
    cdef uint32_t idx = 0, i, ln
    cdef uint32_t n = xsk_ring_cons__peek(&s.rx, w.sw.batch, &idx)
    cdef const xdp_desc *d
    cdef uint64_t addr
    cdef int e
    cdef PortStats *st = &w.st[p]
    if n == 0:
        return 0
    # The kernel wrote these frames on another core: ask for all their headers at once so
    # the cache misses overlap instead of stalling the decision loop one frame at a time.
    for i in range(n):
        pyxsw_prefetch(w.sw.area + xsk_ring_cons__rx_desc(&s.rx, idx + i).addr)
    for i in range(n):
        d = xsk_ring_cons__rx_desc(&s.rx, idx + i)
        addr = d.addr
        ln = d.len
        if PYXSW_DEBUG:
            pyxsw_check(addr + ln <= w.sw.area_size, "an RX descriptor outside the UMEM")
        st.c[PORT_RX_PACKETS] += 1
        st.c[PORT_RX_BYTES] += ln
        e = decide(w, tab, w.sw.area + addr, ln, p, now)
        if pyxsw_likely(e >= 0):
            stage(w, <uint16_t>e, addr, ln)
        elif e == FWD_FLOOD:
            if pyxsw_unlikely(w.fl_allow[p] != 0):
                if w.fl_used[p] >= w.fl_allow[p]:
                    st.c[PORT_FLOOD_LIMITED] += 1
                    cache_put(w, addr)
                    continue
                w.fl_used[p] += 1
            st.c[PORT_FLOODED] += 1
            flood(w, p, addr, ln)
        else:
            if e == FWD_RUNT:
                st.c[PORT_RUNTS] += 1
            elif e == FWD_RESERVED:
                st.c[PORT_RESERVED_DROPPED] += 1
            else:
                st.c[PORT_FILTERED] += 1
            cache_put(w, addr)
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
    w.c[WORKER_IDLE_LOOPS] += 1
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
            s = w.sock[p]
            if s == NULL:
                continue
            reap(w, s)
            refill(w, s)
            got += rx_burst(w, s, p, tab, now)
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
    pyxsw_store_int(&w.parked, 1)
