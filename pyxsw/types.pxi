# The data model of pyxsw's core: every limit, enum and struct, before any code (included
# first by _core.pyx, so that no file depends on the order of the others).
#
#   Sw          the datapath: one per switch
#    +- Umem      the UMEM: area, registration, its fill/completion rings, the frame Pool,
#    |            and the anchor (the UMEM's first socket, which must stay bound)
#    +- Fdb       the MAC table: FdbTable (slots, the live list) behind one pointer
#    +- Xdp       the XDP program, loaded once and attached to every port, and its maps
#    +- Port[]    a switch port: its kind, its link state, one Sock per queue
#    +- Worker[]  worker q: its view of the ports, frame cache, counters, EventRing
#
# Counters are arrays indexed by the enums that setup.py generates from pyxsw/counters.py
# (includes/counters.pxd); the limits the XDP program shares are in xdp/pyxsw_shared.h.

cdef enum:
    MAX_WORKERS = 16        # workers, and so queues per port (< PYXSW_MAX_QUEUES)
    MAX_BATCH = 256         # frames per RX burst at most
    # Jumbo frames (multi-buffer AF_XDP): a frame larger than a UMEM frame arrives as a chain
    # of descriptors, XDP_PKT_CONTD on all but the last.  MAX_FRAGS is the longest chain the
    # switch carries: the kernel's limit on one frame sent in copy mode (MAX_SKB_FRAGS + 1),
    # and what [switch] max_frame is bounded by (config.py).  A burst takes `batch`
    # descriptors and then the rest of the frame the batch cut, so an egress port has at most
    # TX_SLOTS descriptors staged.
    MAX_FRAGS = 18
    TX_SLOTS = MAX_BATCH + MAX_FRAGS
    # Rings: the kernel takes any power of two and allocates each ring in one piece while
    # the bind waits (2**31 entries held the machine for tens of seconds).  32768 is four
    # times the largest NIC descriptor rings (8K) and costs 1.5 MiB per socket.
    MAX_RING_SIZE = 32768
    # The FDB: its table has 2 x capacity slots rounded up to a power of two, indexed in 32
    # bits; 2**24 entries (16.7 million: 896 MiB a table) is far beyond any switch's table.
    MAX_FDB_CAPACITY = 1 << 24

    CACHE_SIZE = 8192       # frames a worker's cache can hold at most
    CACHE_CHUNK = 512       # frames moved between a cache and the shared stack at once
    EV_RING = 1024          # events one ring holds (a power of two)
    ADAPTIVE_SPINS = 2048   # empty passes before an adaptive worker sleeps
    SLEEP_MS = 1000         # poll(2) timeout: the eventfd wakes a sleeper sooner

# MAX_PORTS (64) is PYXSW_MAX_PORTS of xdp/pyxsw_shared.h: the XDP program's maps have a row
# per port index (includes/xdp_shared.pxd).


cdef enum Mode:
    MODE_POLL = 0           # never sleep; busy-poll socket options where the kernel takes them
    MODE_INTERRUPT = 1      # sleep in poll(2) when a pass finds nothing
    MODE_ADAPTIVE = 2       # spin while traffic flows, sleep after ADAPTIVE_SPINS empty passes


cdef enum PortKind:         # what the per-port steps (open, poll, send, count, close) switch on
    KIND_NONE = 0           # a free slot
    KIND_AFXDP = 1          # an interface: the switch's XDP program, an AF_XDP socket per queue
    KIND_VIRTUAL = 2        # no interface, no socket: tests of the forwarding decision


cdef enum:                  # the forwarding decision, when it is not an egress port index
    FWD_FLOOD = -1          # broadcast, multicast, unknown unicast
    FWD_RUNT = -2           # shorter than an Ethernet header
    FWD_FILTER = -3         # destination sits on the ingress port
    FWD_RESERVED = -4       # to a reserved link-local group (01:80:c2:00:00:0x): not forwarded
    FWD_VLAN = -5           # not in a VLAN the ingress port carries
    VLAN_ACCESS = 0         # a port's vlan_mode: untagged frames, one VLAN
    VLAN_TRUNK = 1          # tagged frames of its allowed VLANs, untagged ones of its native
    VLAN_IDS = 4096         # 12-bit VIDs; 1..4094 can be carried
    VLAN_WORDS = 64         # uint64_t words of a VLAN bitmap
    COPY_OFF = 64           # where a flood copy starts in its frame: room to push a tag
    XDP_PACKET_HEADROOM = 256   # where the kernel puts a received frame in its UMEM frame
    TAP_IN = 1              # a port's tap (capture) directions: frames it receives,
    TAP_OUT = 2             # frames the switch sends out of it
    CAP_RING = 512          # captured frames one worker's capture ring holds (a power of two)
    TXL_CONTD = 0x80000000  # in a staged length (Worker.txl): more of the frame follows
    TXL_LEN = 0x7fffffff    # ... and the descriptor's length


cdef enum SlotState:        # of an FDB slot
    SLOT_EMPTY = 0          # never used: ends every probe
    SLOT_LIVE = 1
    SLOT_DEAD = 2           # a tombstone: probes walk past it


cdef enum:                  # outcomes of fdb_put_locked() and fdb_learn()
    FDB_R_SAME = 0          # already there, on that port: refreshed
    FDB_R_NEW = 1           # a new entry
    FDB_R_MOVED = 2         # the MAC moved to another port (or became static)
    FDB_R_FULL = -1         # at capacity: not learned
    FDB_R_LIMIT = -2        # the port is at its learning limit: not learned
    FDB_R_STATIC = -3       # a static entry for that MAC exists: learning never moves it
    FDB_R_BUSY = -4         # fdb_learn(): a writer held the lock; not learned this time


cdef enum EventKind:        # what an Event carries
    EV_NONE = 0
    EV_LEARN = 1            # FdbEventData: a MAC learned on .port
    EV_MOVE = 2             # FdbEventData: a MAC moved from .old_port to .port


cdef enum AnchorKind:       # where the UMEM's first socket is bound
    ANCHOR_NONE = 0         # no socket yet
    ANCHOR_OWN_NETNS = 1    # lo of a network namespace made for this switch alone
    ANCHOR_HOST_LO = 2      # the host's lo (making a namespace was refused)
    ANCHOR_PORT = 3         # the first port's queue (zero-copy, or no lo could be had)


cdef enum ZeroCopy:         # the zero_copy setting
    ZC_AUTO = 0
    ZC_ON = 1
    ZC_OFF = 2


# ---------------------------------------------------------------------------- UMEM

cdef struct Pool:           # the free frames: a LIFO stack behind a mutex
    uint64_t *addrs         # frame base addresses (no offset)
    uint32_t n              # free frames on the stack
    uint32_t size           # every frame of the UMEM fits
    pthread_mutex_t lock


cdef struct Sock:           # one AF_XDP socket: a (port, queue), or the anchor
    xsk_ring_cons rx
    xsk_ring_prod tx
    xsk_ring_prod fill
    xsk_ring_cons comp
    xsk_socket *xsk
    int fd


cdef struct Umem:
    uint8_t *area           # nframes x frame_size bytes, mapped and populated at start
    uint64_t area_size
    xsk_umem *xsk           # the registration; NULL when there is no UMEM (tests)
    xsk_ring_prod fill      # rings made with the UMEM; libxdp hands them to its first socket
    xsk_ring_cons comp
    uint32_t frame_size
    uint64_t frame_mask     # addr & frame_mask is a frame's base address
    uint32_t nframes
    uint32_t ring_size      # of every ring of every socket
    uint32_t fill_target    # frames kept in each fill ring (half the UMEM over all sockets)
    uint32_t max_frame      # [switch] max_frame: the longest frame the switch carries
    int sg                  # multi-buffer (XDP_USE_SG): 1 wanted (max_frame > a frame's room)
                            # and, once the first socket is bound, taken; 0 not wanted, or
                            # (max_frame above a frame's room) refused by the kernel
    int nsocks              # sockets of ports open on the UMEM (not a retired anchor)
    int zero_copy           # ZC_*: as configured
    bint zero_copy_active   # the sockets bound in zero-copy mode
    Pool pool
    # The anchor.  libxdp makes the first socket on a UMEM out of the UMEM's own file
    # descriptor, which stays bound to its (interface, queue) until the UMEM goes, and the
    # kernel shares a UMEM through it.  In copy mode it is a socket on a lo that receives
    # nothing; when it is a port's socket and that port is deleted, it is kept here, idle and
    # empty (retired), and taken again if the same interface comes back.
    Sock *owner
    int anchor              # ANCHOR_*
    int anchor_err          # errno of the failed own-namespace anchor (ANCHOR_HOST_LO)
    int anchor_ifindex      # the host's lo under ANCHOR_HOST_LO (never a port), else 0
    int owner_ifindex       # the port interface under ANCHOR_PORT, else -1
    int owner_q
    bint owner_retired
    char owner_name[16]


# ---------------------------------------------------------------------------- FDB

cdef struct FdbSlot:
    uint32_t seq            # seqlock: odd while a writer is changing this slot
    uint8_t state           # SLOT_*
    uint8_t is_static       # never aged, never moved by learning, never evicted
    uint16_t port           # egress port index
    uint64_t key            # vlan << 48 | mac (the 6 wire bytes read little-endian)
    uint32_t seen           # last seen, coarse monotonic seconds (lock-free refresh)
    uint32_t pos            # where this LIVE slot is in the table's `order` (writers only)


cdef struct FdbTable:
    FdbSlot *slots
    uint32_t *order         # the LIVE slots' indexes, densely: listing, flushing and aging
                            # walk these, not every slot (a full scan sweeps the workers' cache)
    uint32_t mask           # slots - 1 (a power of two)
    uint32_t live           # SLOT_LIVE slots
    uint32_t used           # SLOT_LIVE + SLOT_DEAD slots: what a missing key's probe walks over


cdef struct Fdb:
    FdbTable *tab           # current table; readers load it once per burst
    FdbTable *retired       # replaced table waiting for every worker to pass a grace period
    pthread_mutex_t lock    # writers only
    uint32_t capacity       # live entries at most (static included)
    uint32_t port_limit     # learned (non-static) entries per port at most; 0 = no limit
    uint32_t aging          # seconds; 0 = never
    uint32_t per_port[MAX_PORTS]    # learned entries per port, for port_limit
    uint64_t aged           # entries removed by the sweep
    # The kernel copy (fastpath = "xdp", fastpath.pyx): the XDP program's fdb_map, which
    # every writer here changes with the table, under the lock; -1 when there is none.
    int kfd
    uint64_t ksync_errors   # kernel updates that failed (the key was then taken out of it)


cdef struct FdbEntry:       # one entry as fdb_entries() lists it
    uint64_t key
    uint16_t port
    uint8_t is_static
    uint32_t age            # seconds since last seen (0 for static entries)
    uint8_t in_kernel       # in the kernel copy (fdb_list with the fast path)


# ---------------------------------------------------------------------------- events

cdef struct FdbEventData:
    uint64_t key            # vlan << 48 | mac
    uint16_t port
    uint16_t old_port       # EV_MOVE: where it was; EV_LEARN: = port


cdef union EventData:       # one member per kind family; raw is the size later kinds get
    FdbEventData fdb
    uint64_t raw[2]


cdef struct Event:
    uint8_t kind            # EV_*
    EventData d


cdef struct CapRec:         # one captured frame's header; its bytes follow (CapRing.slot long)
    uint64_t ts_ns          # CLOCK_REALTIME when the worker copied it
    uint32_t len            # the frame's length on the wire
    uint32_t caplen         # bytes kept (the capture's snaplen at most)
    uint16_t port
    uint8_t dir             # TAP_IN or TAP_OUT
    uint8_t pad[5]


cdef struct CapRing:
    # A worker's captured frames for the control thread: one producer (the worker), one
    # consumer, the EventRing's protocol (a full ring counts the frame lost; a ring the
    # consumer had emptied owes the events eventfd a wake-up, through the worker's event
    # ring's `signal`).  Allocated when the first capture starts, freed with the worker.
    uint32_t head
    uint32_t tail
    uint32_t slot           # bytes per record: header + the UMEM's frame size
    uint8_t *recs           # CAP_RING records


cdef struct EventRing:
    # Single producer (a worker) and single consumer (the control thread).  Full: the event
    # is counted in `lost`, never waited for.  The producer asks for a wake-up (`signal`)
    # when it fills a ring the consumer had emptied, and writes `efd` once per pass.
    uint32_t head           # next slot the producer writes
    uint32_t tail           # next slot the consumer reads
    uint64_t lost
    int efd                 # eventfd the consumer polls (-1: none)
    bint signal             # producer side: efd is owed a write
    Event ev[EV_RING]


# ---------------------------------------------------------------------------- XDP and ports

cdef struct Xdp:
    # pyxsw's XDP program, loaded once per switch and attached to every AF_XDP port, and
    # its maps, made by the switch (see ports.pyx): every port runs that one program.
    xdp_program *prog       # NULL until the first port needs it
    int attached            # ports it is attached to
    int ports_map_fd        # ifindex -> port index
    int xsks_map_fd         # port index * PYXSW_MAX_QUEUES + queue -> AF_XDP socket
    int stats_map_fd        # port index * PROG_COUNTERS + counter -> per-CPU count
    # the fast path's (fastpath.pyx)
    int rows_map_fd         # port index -> the port's row (fastpath.pyx)
    int ifx_map_fd          # ifindex -> port index + 1, for ifindexes < PYXSW_IFX_DIRECT
    int config_map_fd       # [CONFIG_FASTPATH]: the fast path on (1) or off; [CONFIG_MAX_FRAME]
    int tx_map_fd           # port index -> its interface, for bpf_redirect_map (a device map)
    int fdb_map_fd          # the kernel copy of the FDB
    int fast_stats_fd       # port index * FASTPATH_COUNTERS + counter -> per-CPU count
    uint32_t fdb_capacity   # fdb_map's size: the FDB's capacity
    uint32_t fastpath       # what config_map says
    int ncpu                # possible CPUs: the per-CPU values of one stats slot


cdef struct Port:
    int kind                # KIND_*
    int active              # sockets ready: workers poll and transmit on it
    int up                  # link up: part of the flood set and a unicast destination
    int ifindex
    uint32_t flood_limit    # flooded frames/s this port may cause; 0 = no limit
    int forward_reserved    # flood reserved link-local frames received here (else drop them)
    int fp_capable          # its device takes XDP-redirected frames (the switch asks the
                            # kernel's netdev family): a fast-path target while up
    int fp_sg               # ... in several buffers too: a target for jumbo frames
    uint32_t mtu            # its interface's MTU, as the switch follows it (0: not known)
    uint32_t max_segs       # descriptors a frame it sends may span (zero-copy: the device's
                            # zc-max-segs); 0: MAX_FRAGS
    uint32_t row_seq        # the seq its row in the XDP program's port_rows has (even)
    char name[16]
    int attach_mode         # XDP_MODE_NATIVE / XDP_MODE_SKB while the program is attached, else 0
    Sock *socks[MAX_WORKERS]
    # 802.1Q membership (access VLAN 1 until set): the VLANs it carries, and the one whose
    # frames arrive and leave untagged (the access VLAN, or a trunk's native one; 0 = none)
    int vlan_mode           # VLAN_ACCESS / VLAN_TRUNK
    uint16_t untagged
    uint64_t vlans[VLAN_WORDS]
    # Operations (capture.start, [[mirror]]): which directions workers copy into their
    # capture rings, which ports get a copy of what it receives (mirror_in) and of what it
    # sends (mirror_out), by port-index bit; mirror_dst: it is a mirror's output, forwarding
    # nothing.  A port with any of them takes its traffic off the fast path (fp_flags).
    int tap                 # TAP_IN | TAP_OUT
    uint64_t mirror_in
    uint64_t mirror_out
    int mirror_dst

cdef struct XdpAttached:    # the XDP program attached to an interface (ports.pyx: xdp_attached_open)
    int fd                  # -1: none in driver or generic mode; else the caller closes it
    uint32_t id
    uint32_t mode_flag      # XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE: what detaches it
    char name[16]           # BPF_OBJ_NAME_LEN: the kernel keeps 15 characters of a name


# ---------------------------------------------------------------------------- workers

cdef struct Sw


cdef struct Frame:          # what classify() found of a received frame
    uint16_t vlan           # the VLAN it belongs to
    uint16_t tci            # its 802.1Q tag control (PCP, DEI, VID) when tagged
    bint tagged


cdef struct PortStats:      # one per (worker, port): written by that worker only
    uint64_t c[PORT_COUNTERS]       # indexed by PORT_*


cdef struct Worker:
    Sw *sw
    int q
    int running             # cleared by stop
    int mode                # MODE_*
    int parked              # 1 while asleep in poll(2): holds no FDB table or port pointer
    uint64_t epoch          # bumped every pass: a grace-period marker
    int efd                 # eventfd that wakes this worker from poll(2)
    # The worker's view of the ports, copied from the switch when its generation changes,
    # so that per-frame code reads only worker-local memory plus the FDB.
    uint32_t gen            # the switch generation last copied below
    int nact                # ports this worker polls (active ones)
    uint16_t act[MAX_PORTS]
    uint8_t kind[MAX_PORTS]         # the ports' kind
    Sock *sock[MAX_PORTS]   # this worker's socket on each port (NULL when it has none)
    int nup                 # the flood set: active ports whose link is up
    uint16_t upl[MAX_PORTS]
    uint8_t isup[MAX_PORTS]
    uint8_t fwd_res[MAX_PORTS]      # the ports' forward_reserved
    uint8_t vmode[MAX_PORTS]        # the ports' vlan_mode
    uint16_t vuntag[MAX_PORTS]      # the ports' untagged VLAN (0 = none)
    uint64_t vlans[MAX_PORTS * VLAN_WORDS]  # the ports' VLAN bitmaps
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
    # Counters, indexed by WORKER_*: this worker writes, anyone reads.  The frames_* ones are
    # the frame flow through this worker: what came into its hands and what left them; at
    # the end of every pass `ncache` must equal the balance (a debug build checks).  The
    # gauges (cache) and the event ring's losses are filled in by worker_counters().
    uint64_t c[WORKER_COUNTERS]
    PortStats st[MAX_PORTS]
    EventRing events        # FDB events for the control thread
    # operations (copied with the ports): taps[p] any of tap, mirror_in, mirror_out on p;
    # ntaps how many ports have one: 0 costs the packet path one branch per burst
    int ntaps
    uint8_t tap[MAX_PORTS]
    uint8_t mdst[MAX_PORTS]
    uint64_t mir_in[MAX_PORTS]
    uint64_t mir_out[MAX_PORTS]
    uint32_t cap_snap       # bytes a captured frame keeps at most
    CapRing *cap            # the capture ring (sw.cap_on: allocated)
    # jumbo frames: the chain rx_burst is forwarding, and rx_skip[p]: the rest of a chain
    # too long to carry is still to come on p's RX ring (dropped as it arrives)
    uint64_t cha[MAX_FRAGS]
    uint32_t chl[MAX_FRAGS]
    uint8_t rx_skip[MAX_PORTS]
    uint8_t maxsegs[MAX_PORTS]      # descriptors a frame sent out of p may span (MAX_FRAGS,
                                    # or its zero-copy device's zc-max-segs)
    # burst scratch: descriptors staged per egress port, a length with TXL_CONTD on every
    # descriptor of a frame but its last
    int ndirty
    uint16_t dirty[2 * MAX_PORTS]   # a mirror's output can come back once in a flush
    uint32_t ntx[MAX_PORTS]
    uint64_t txa[MAX_PORTS * TX_SLOTS]
    uint32_t txl[MAX_PORTS * TX_SLOTS]


cdef struct Sw:             # the datapath
    Umem umem
    Fdb fdb
    Xdp xdp
    uint32_t batch          # frames per RX burst
    int tx_budget           # frames per TX kick set on the sockets; 0: refused; -1: not tried
    int busy_poll           # the busy-poll options were taken (1) or refused (0); -1: not tried
    int nworkers
    int fastpath            # [switch] fastpath = "xdp": known unicast forwarded by the program
    Worker *workers[MAX_WORKERS]
    int events_fd           # eventfd every worker's event ring signals; the control side polls it
    uint32_t gen            # bumped whenever ports change: workers re-copy their view
    uint32_t cfg_seq        # odd while a port's multi-word settings (its VLANs) are written:
                            # a worker copying them then copies again (a seqlock)
    Port ports[MAX_PORTS]
    uint32_t cap_snap       # the longest snaplen of the captures running (control side)
