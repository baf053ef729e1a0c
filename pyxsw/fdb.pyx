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
# Deletion leaves a tombstone (SLOT_DEAD) so that probes for other keys still walk past it.  When
# tombstones pile up the sweep builds a fresh table and swaps the one pointer that readers
# load at the top of each burst; the old table is freed once every worker has passed a
# quiescent point (Datapath.wait_grace()).
#
# The "last seen" time is refreshed by workers with a plain store and no lock: losing a race
# with the sweep costs one entry being aged and learned again, never a wrong port.

# Everything that reads or changes the table is here: the lock-free lookup and learning the
# workers call on the packet path, and the walks the control thread makes (list, flush, age,
# rebuild), which return plain C data or Python lists and never hand out slots.

cdef uint64_t MAC_MASK = 0xffffffffffffULL


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
        return NULL             # slot indexes are 32-bit; Datapath() refuses such a capacity
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
        if state == SLOT_EMPTY:
            return NULL
        if state == SLOT_LIVE and k == key:
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
        if s.state == SLOT_EMPTY:
            return NULL
        if s.state == SLOT_LIVE and s.key == key:
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
        if s.state == SLOT_DEAD:
            return s
        if s.state == SLOT_EMPTY:
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
        slot_write(s, SLOT_LIVE, is_static, port, key, now)
        if f.kfd >= 0:
            kfdb_set(f, key, port, now)
        return FDB_R_MOVED
    if t.live >= f.capacity:
        return FDB_R_FULL
    if not is_static and f.port_limit and f.per_port[port] >= f.port_limit:
        return FDB_R_LIMIT
    s = fdb_free_slot(t, key)
    if s == NULL:
        return FDB_R_FULL       # tombstones fill the table until the next rebuild
    if s.state == SLOT_EMPTY:
        t.used += 1
    slot_write(s, SLOT_LIVE, is_static, port, key, now)
    s.pos = t.live
    t.order[t.live] = <uint32_t>(s - t.slots)
    t.live += 1
    if not is_static:
        f.per_port[port] += 1
    if f.kfd >= 0:
        kfdb_set(f, key, port, now)
    return FDB_R_NEW


cdef void fdb_kill_locked(Fdb *f, FdbSlot *s) noexcept nogil:
    cdef FdbTable *t = f.tab
    cdef uint32_t last
    if not s.is_static:
        f.per_port[s.port] -= 1
    if f.kfd >= 0:
        kfdb_del(f, s.key)
    slot_write(s, SLOT_DEAD, 0, 0, s.key, 0)
    t.live -= 1
    last = t.order[t.live]              # the last LIVE slot takes the dead one's place
    t.order[s.pos] = last
    t.slots[last].pos = s.pos


cdef int fdb_init(Fdb *f, uint32_t capacity, uint32_t port_limit, uint32_t aging) noexcept nogil:
    memset(f, 0, sizeof(Fdb))
    f.capacity = capacity
    f.port_limit = port_limit
    f.aging = aging
    f.kfd = -1
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
        if s.state != SLOT_LIVE:
            continue
        j = fdb_hash(s.key) & t.mask
        while t.slots[j].state != SLOT_EMPTY:
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


cdef void fdb_free_retired(Fdb *f) noexcept nogil:
    """Once every worker has passed a grace period since the rebuild."""
    fdb_table_free(f.retired)
    f.retired = NULL


# ---------------------------------------------------------------------------- the packet path

cdef inline int fdb_learn(Fdb *f, FdbTable *tab, uint64_t key, uint16_t port, uint32_t now,
                          uint16_t *old) noexcept nogil:
    """A frame from `key` came in on `port`: FDB_R_SAME (refreshed, without a lock), an
    outcome of fdb_put_locked(), or FDB_R_BUSY when a writer holds the lock (the next frame
    from that MAC learns it: the packet path never waits).  *old: where it was (a move)."""
    cdef FdbSlot *s = fdb_find(tab, key, old)
    cdef int r
    if pyxsw_likely(s != NULL and old[0] == port):
        if s.seen != now:
            s.seen = now
        return FDB_R_SAME
    if pthread_mutex_trylock(&f.lock) != 0:
        return FDB_R_BUSY
    r = fdb_put_locked(f, key, port, now, 0)
    pthread_mutex_unlock(&f.lock)
    return r


# ---------------------------------------------------------------------------- the control path

cdef int fdb_add_static(Fdb *f, uint64_t key, uint16_t port) noexcept nogil:
    """Add (or turn into) a static entry: an outcome of fdb_put_locked()."""
    cdef int r
    pthread_mutex_lock(&f.lock)
    r = fdb_put_locked(f, key, port, now_s(), 1)
    pthread_mutex_unlock(&f.lock)
    return r


cdef bint fdb_remove(Fdb *f, uint64_t key) noexcept nogil:
    cdef FdbSlot *s
    pthread_mutex_lock(&f.lock)
    s = fdb_find_locked(f.tab, key)
    if s != NULL:
        fdb_kill_locked(f, s)
    pthread_mutex_unlock(&f.lock)
    return s != NULL


cdef uint32_t fdb_flush(Fdb *f, int port, bint with_static, int vlan=-1,
                        const uint64_t *keep=NULL) noexcept nogil:
    """Remove learned entries (static ones too if `with_static`) of one port (-1: all), of
    one VLAN (-1: all), and with `keep` (a VLAN bitmap) only those in VLANs not in it."""
    cdef FdbTable *t
    cdef FdbSlot *s
    cdef uint32_t i, n = 0
    cdef uint16_t v
    pthread_mutex_lock(&f.lock)
    t = f.tab
    for i in reversed(range(t.live)):       # backwards: a kill moves the last one here
        s = &t.slots[t.order[i]]
        v = <uint16_t>(s.key >> 48)
        if (s.state == SLOT_LIVE and (port < 0 or s.port == port)
                and (vlan < 0 or v == vlan)
                and (keep == NULL or not port_carries(keep, v))
                and (with_static or not s.is_static)):
            fdb_kill_locked(f, s)
            n += 1
    pthread_mutex_unlock(&f.lock)
    return n


cdef FdbEntry *fdb_snapshot(Fdb *f, uint32_t now, uint32_t *n) noexcept nogil:
    """The live entries, copied out under the lock (malloc'd; free() it); NULL and
    *n = (uint32_t)-1 when there is no memory for them."""
    cdef FdbTable *t
    cdef FdbSlot *s
    cdef FdbEntry *out
    cdef uint32_t i, k = 0
    pthread_mutex_lock(&f.lock)
    t = f.tab
    out = <FdbEntry *>malloc((t.live if t.live else 1) * sizeof(FdbEntry))
    if out != NULL:
        for i in range(t.live):
            s = &t.slots[t.order[i]]
            if s.state == SLOT_LIVE:
                out[k].key = s.key
                out[k].port = s.port
                out[k].is_static = s.is_static
                out[k].age = 0 if s.is_static else <uint32_t>(now - s.seen)
                out[k].in_kernel = 0
                k += 1
    pthread_mutex_unlock(&f.lock)
    n[0] = k if out != NULL else <uint32_t>-1
    return out


cdef FdbEntry *fdb_age(Fdb *f, uint32_t now, uint32_t *n) noexcept nogil:
    """The sweep: remove learned entries unseen for `aging` seconds; returns them (malloc'd,
    as fdb_snapshot(); without memory for the list nothing is removed: the next sweep does
    it).  Bounded by the live entries: it walks `order`, not the slots."""
    cdef FdbTable *t
    cdef FdbSlot *s
    cdef FdbEntry *out = NULL
    cdef uint32_t i, k = 0
    pthread_mutex_lock(&f.lock)
    t = f.tab
    if f.aging and t.live:
        out = <FdbEntry *>malloc(t.live * sizeof(FdbEntry))
    if out != NULL:
        for i in reversed(range(t.live)):
            s = &t.slots[t.order[i]]
            if (s.state == SLOT_LIVE and not s.is_static and <uint32_t>(now - s.seen) >= f.aging
                    and (f.kfd < 0 or <uint32_t>(now - kfdb_seen(f, s)) >= f.aging)):
                out[k].key = s.key
                out[k].port = s.port
                out[k].is_static = 0
                out[k].age = <uint32_t>(now - s.seen)
                out[k].in_kernel = 0
                k += 1
                fdb_kill_locked(f, s)
        f.aged += k
    pthread_mutex_unlock(&f.lock)
    n[0] = k
    return out


cdef bint fdb_rebuild(Fdb *f) noexcept nogil:
    """Rebuild the table when tombstones pile up; True when a table was retired (free it
    with fdb_free_retired() after a grace period)."""
    cdef bint rebuilt = False
    pthread_mutex_lock(&f.lock)
    if fdb_needs_rebuild(f):
        rebuilt = fdb_rebuild_locked(f) == 0
    pthread_mutex_unlock(&f.lock)
    return rebuilt


cdef void fdb_counters(Fdb *f, uint64_t *out) noexcept nogil:
    """The FDB's own counters into out[FDB_COUNTERS] (the learning ones are the workers')."""
    pthread_mutex_lock(&f.lock)
    out[FDB_ENTRIES] = f.tab.live
    out[FDB_CAPACITY] = f.capacity
    out[FDB_SLOTS] = f.tab.mask + 1
    out[FDB_TOMBSTONES] = f.tab.used - f.tab.live
    out[FDB_AGING] = f.aging
    out[FDB_PORT_LIMIT] = f.port_limit
    out[FDB_AGED] = f.aged
    pthread_mutex_unlock(&f.lock)


# ---------------------------------------------------------------------------- for Python

def mac_to_int(str mac):
    """'aa:bb:cc:dd:ee:ff' -> the FDB's key form (wire bytes read little-endian), parsed by
    pyxsw.vocab (its Invalid is a ValueError)."""
    return _vocab.mac_to_int(mac)


def int_to_mac(uint64_t key):
    return (key & MAC_MASK).to_bytes(6, "little").hex(":")


cdef list fdb_entries_list(FdbEntry *e, uint32_t n, bint full):
    """(mac, vlan, port, age, static, in_kernel) of each entry, or (mac, vlan, port) unless `full`;
    frees e.  MemoryError for a snapshot that had no memory."""
    cdef uint32_t i
    if e == NULL and n == <uint32_t>-1:
        raise MemoryError("no memory to list the FDB")
    try:
        if full:
            return [(int_to_mac(e[i].key), <int>(e[i].key >> 48), e[i].port, e[i].age,
                     bool(e[i].is_static), bool(e[i].in_kernel)) for i in range(n)]
        return [(int_to_mac(e[i].key), <int>(e[i].key >> 48), e[i].port) for i in range(n)]
    finally:
        free(e)


def fdb_memory(capacity):
    """Bytes the FDB of `capacity` entries may hold at once: two tables while a rebuild
    replaces one (the old waits for a grace period)."""
    if not 1 <= capacity <= MAX_FDB_CAPACITY:
        raise _param_error(ValueError(f"capacity must be 1..{MAX_FDB_CAPACITY}, got {capacity}"),
                           "capacity")
    return 2 * fdb_table_slots(capacity) * (sizeof(FdbSlot) + sizeof(uint32_t))


def clock():
    """The FDB's clock: coarse monotonic seconds (what "last seen" is measured in)."""
    return now_s()
