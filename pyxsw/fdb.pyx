# The FDB (MAC learning table), shared by every worker.
#
# An open-addressing hash table with linear probing, keyed by (vlan << 48 | mac), sized to
# twice its capacity so probes stay short.  Readers (workers, once or twice per frame) take
# no lock: each slot carries a sequence number that a writer makes odd while it changes the
# slot, and a reader that sees it odd or changed reads the slot again (a seqlock).  Writers
# are rare (a new MAC, a move, aging, admin commands) and serialize on one mutex; a worker
# only ever *tries* that lock and skips learning when it is busy: the next frame from that
# MAC learns it, and the packet path never blocks.
#
# Deletion leaves a tombstone (DEAD) so that probes for other keys still walk past it.  When
# tombstones pile up the sweep builds a fresh table and swaps the one pointer that readers
# load at the top of each burst; the old table is freed once every worker has passed a
# quiescent point (see Core.grace()).
#
# The "last seen" time is refreshed by workers with a plain store and no lock: losing a race
# with the sweep costs one entry being aged and learned again, never a wrong port.

cdef enum:
    FDB_EMPTY = 0
    FDB_LIVE = 1
    FDB_DEAD = 2

    # Outcomes of fdb_put_locked()
    FDB_R_SAME = 0      # already there, on that port: refreshed
    FDB_R_NEW = 1       # a new entry
    FDB_R_MOVED = 2     # the MAC moved to another port (or became static)
    FDB_R_FULL = -1     # at capacity: not learned
    FDB_R_LIMIT = -2    # the port is at its learning limit: not learned
    FDB_R_STATIC = -3   # a static entry for that MAC exists: learning never moves it

cdef uint64_t MAC_MASK = 0xffffffffffffULL


cdef struct FdbSlot:
    uint32_t seq        # seqlock: odd while a writer is changing this slot
    uint8_t state       # FDB_EMPTY / FDB_LIVE / FDB_DEAD
    uint8_t is_static   # never aged, never moved by learning, never evicted
    uint16_t port       # egress port index
    uint64_t key        # vlan << 48 | mac (the 6 wire bytes read little-endian)
    uint32_t seen       # last seen, coarse monotonic seconds (lock-free refresh)
    uint32_t pos        # where this LIVE slot is in the table's `order` (writers only)


cdef struct FdbTable:
    FdbSlot *slots
    uint32_t *order     # the LIVE slots' indexes, densely: listing, flushing and aging walk
                        # these, not every slot (a full scan sweeps the cache workers use)
    uint32_t mask       # slots - 1 (a power of two)
    uint32_t live       # FDB_LIVE slots
    uint32_t used       # FDB_LIVE + FDB_DEAD slots: what a missing key's probe walks over


cdef struct Fdb:
    FdbTable *tab           # current table; readers load it once per burst
    FdbTable *retired       # replaced table waiting for every worker to pass a grace period
    pthread_mutex_t lock    # writers only
    uint32_t capacity       # live entries at most (static included)
    uint32_t port_limit     # learned (non-static) entries per port at most; 0 = no limit
    uint32_t aging          # seconds; 0 = never
    uint32_t per_port[MAX_PORTS]    # learned entries per port, for port_limit
    uint64_t aged           # entries removed by the sweep


cdef inline uint32_t now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return <uint32_t>ts.tv_sec


cdef inline uint32_t fdb_hash(uint64_t key) noexcept nogil:
    # Fibonacci hashing: the high bits of key * 2^64/phi spread MACs that differ in any byte.
    return <uint32_t>((key * 0x9E3779B97F4A7C15ULL) >> 32)


cdef inline uint64_t fdb_table_slots(uint32_t capacity) noexcept nogil:
    # Counted in 64 bits: in 32, 2 * capacity wraps above 2**31 (a 64-slot table) and the
    # loop never ends above 2**30.
    cdef uint64_t n = 64
    while n < 2 * <uint64_t>capacity:
        n <<= 1
    return n


cdef FdbTable *fdb_table_new(uint32_t capacity) noexcept nogil:
    cdef uint64_t n = fdb_table_slots(capacity)
    cdef FdbTable *t
    if capacity > MAX_FDB_CAPACITY:
        return NULL             # slot indexes are 32-bit; Core() refuses such a capacity
    t = <FdbTable *>calloc(1, sizeof(FdbTable))
    if t == NULL:
        return NULL
    t.slots = <FdbSlot *>calloc(n, sizeof(FdbSlot))
    t.order = <uint32_t *>calloc(n, sizeof(uint32_t))
    if t.slots == NULL or t.order == NULL:
        free(t.slots)
        free(t.order)
        free(t)
        return NULL
    t.mask = n - 1
    return t


cdef void fdb_table_free(FdbTable *t) noexcept nogil:
    if t != NULL:
        free(t.slots)
        free(t.order)
        free(t)


cdef inline FdbSlot *fdb_find(FdbTable *t, uint64_t key, uint16_t *port) noexcept nogil:
    """Lock-free lookup; the entry's port goes to *port.  NULL when absent."""
    cdef uint32_t i = fdb_hash(key) & t.mask
    cdef uint32_t probes = 0
    cdef uint32_t seq
    cdef FdbSlot *s
    cdef uint8_t state
    cdef uint64_t k
    cdef uint16_t p
    while probes <= t.mask:
        s = &t.slots[i]
        seq = pyxsw_load_acq32(&s.seq)
        state = s.state
        k = s.key
        p = s.port
        pyxsw_fence_acq()
        if pyxsw_unlikely((seq & 1) != 0 or pyxsw_load_rlx32(&s.seq) != seq):
            pyxsw_cpu_relax()
            continue        # a writer is in this slot: read it again
        if state == FDB_EMPTY:
            return NULL
        if state == FDB_LIVE and k == key:
            port[0] = p
            return s
        i = (i + 1) & t.mask
        probes += 1
    return NULL


cdef inline void slot_write(FdbSlot *s, uint8_t state, uint8_t is_static, uint16_t port,
                            uint64_t key, uint32_t seen) noexcept nogil:
    cdef uint32_t seq = s.seq
    pyxsw_store_rlx32(&s.seq, seq + 1)
    pyxsw_fence_rel()
    s.state = state
    s.is_static = is_static
    s.port = port
    s.key = key
    s.seen = seen
    pyxsw_store_rel32(&s.seq, seq + 2)


cdef FdbSlot *fdb_find_locked(FdbTable *t, uint64_t key) noexcept nogil:
    cdef uint32_t i = fdb_hash(key) & t.mask
    cdef uint32_t probes = 0
    cdef FdbSlot *s
    while probes <= t.mask:
        s = &t.slots[i]
        if s.state == FDB_EMPTY:
            return NULL
        if s.state == FDB_LIVE and s.key == key:
            return s
        i = (i + 1) & t.mask
        probes += 1
    return NULL


cdef FdbSlot *fdb_free_slot(FdbTable *t, uint64_t key) noexcept nogil:
    """The first DEAD or EMPTY slot on key's probe path; NULL if only the last EMPTY is left."""
    cdef uint32_t i = fdb_hash(key) & t.mask
    cdef uint32_t probes = 0
    cdef FdbSlot *s
    while probes <= t.mask:
        s = &t.slots[i]
        if s.state == FDB_DEAD:
            return s
        if s.state == FDB_EMPTY:
            # Keep one EMPTY slot at least, so that every probe for a missing key ends.
            return s if t.used + 1 < t.mask + 1 else NULL
        i = (i + 1) & t.mask
        probes += 1
    return NULL


cdef int fdb_put_locked(Fdb *f, uint64_t key, uint16_t port, uint32_t now,
                        bint is_static) noexcept nogil:
    """Learn (is_static=0) or add a static entry.  Caller holds f.lock."""
    cdef FdbTable *t = f.tab
    cdef FdbSlot *s = fdb_find_locked(t, key)
    if s != NULL:
        if s.is_static and not is_static:
            return FDB_R_STATIC
        if s.port == port and s.is_static == is_static:
            s.seen = now
            return FDB_R_SAME
        if not is_static and f.port_limit and f.per_port[port] >= f.port_limit:
            return FDB_R_LIMIT
        if not s.is_static:
            f.per_port[s.port] -= 1
        if not is_static:
            f.per_port[port] += 1
        slot_write(s, FDB_LIVE, is_static, port, key, now)
        return FDB_R_MOVED
    if t.live >= f.capacity:
        return FDB_R_FULL
    if not is_static and f.port_limit and f.per_port[port] >= f.port_limit:
        return FDB_R_LIMIT
    s = fdb_free_slot(t, key)
    if s == NULL:
        return FDB_R_FULL       # tombstones fill the table until the next rebuild
    if s.state == FDB_EMPTY:
        t.used += 1
    slot_write(s, FDB_LIVE, is_static, port, key, now)
    s.pos = t.live
    t.order[t.live] = <uint32_t>(s - t.slots)
    t.live += 1
    if not is_static:
        f.per_port[port] += 1
    return FDB_R_NEW


cdef void fdb_kill_locked(Fdb *f, FdbSlot *s) noexcept nogil:
    cdef FdbTable *t = f.tab
    cdef uint32_t last
    if not s.is_static:
        f.per_port[s.port] -= 1
    slot_write(s, FDB_DEAD, 0, 0, s.key, 0)
    t.live -= 1
    last = t.order[t.live]              # the last LIVE slot takes the dead one's place
    t.order[s.pos] = last
    t.slots[last].pos = s.pos


cdef int fdb_init(Fdb *f, uint32_t capacity, uint32_t port_limit, uint32_t aging) noexcept nogil:
    memset(f, 0, sizeof(Fdb))
    f.capacity = capacity
    f.port_limit = port_limit
    f.aging = aging
    pthread_mutex_init(&f.lock, NULL)
    f.tab = fdb_table_new(capacity)
    return 0 if f.tab != NULL else -1


cdef void fdb_destroy(Fdb *f) noexcept nogil:
    fdb_table_free(f.tab)
    fdb_table_free(f.retired)
    f.tab = NULL
    f.retired = NULL
    pthread_mutex_destroy(&f.lock)




cdef bint fdb_needs_rebuild(Fdb *f) noexcept nogil:
    # Tombstones make misses walk further; rebuild when they are a quarter of the table.
    return f.retired == NULL and (f.tab.used - f.tab.live) * 4 > f.tab.mask + 1


cdef int fdb_rebuild_locked(Fdb *f) noexcept nogil:
    """Copy the live entries to a fresh table and publish it; the old one is retired."""
    cdef FdbTable *old = f.tab
    cdef FdbTable *t
    cdef uint32_t i, j
    cdef FdbSlot *s
    if f.retired != NULL:
        return -1
    t = fdb_table_new(f.capacity)
    if t == NULL:
        return -1
    for i in range(old.mask + 1):
        s = &old.slots[i]
        if s.state != FDB_LIVE:
            continue
        j = fdb_hash(s.key) & t.mask
        while t.slots[j].state != FDB_EMPTY:
            j = (j + 1) & t.mask
        t.slots[j] = s[0]
        t.slots[j].seq = 0
        t.slots[j].pos = t.live
        t.order[t.live] = j
        t.live += 1
        t.used += 1
    pyxsw_store_ptr(<void **>&f.tab, t)
    f.retired = old
    return 0
