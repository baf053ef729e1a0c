# C declarations from <xdp/xsk.h> and <linux/if_xdp.h>: only the members pyxsw uses.
# The ring helpers are static inline in the header, so calls from Cython inline too.
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "<linux/if_xdp.h>" nogil:
    enum:
        XDP_SHARED_UMEM
        XDP_COPY
        XDP_ZEROCOPY
        XDP_USE_NEED_WAKEUP
        XDP_STATISTICS
        XDP_OPTIONS
        XDP_OPTIONS_ZEROCOPY

    struct xdp_desc:
        uint64_t addr
        uint32_t len
        uint32_t options

    struct xdp_statistics:
        uint64_t rx_dropped
        uint64_t rx_invalid_descs
        uint64_t tx_invalid_descs
        uint64_t rx_ring_full
        uint64_t rx_fill_ring_empty_descs
        uint64_t tx_ring_empty_descs

    struct xdp_options:
        uint32_t flags

# Multi-buffer AF_XDP (Linux 6.6+; include/uapi/linux/if_xdp.h): Debian's header lacks both,
# so they are spelled here.  A kernel without them refuses the bind flag with EINVAL.
cdef enum:
    XDP_USE_SG = 1 << 4         # bind flag: frames may span several descriptors
    XDP_PKT_CONTD = 1 << 0      # xdp_desc.options: the frame goes on in the next descriptor

cdef extern from "<xdp/xsk.h>" nogil:
    struct xsk_ring_prod:
        uint32_t cached_prod
        uint32_t cached_cons
        uint32_t mask
        uint32_t size
        uint32_t *producer
        uint32_t *consumer
        void *ring
        uint32_t *flags

    struct xsk_ring_cons:
        uint32_t cached_prod
        uint32_t cached_cons
        uint32_t mask
        uint32_t size
        uint32_t *producer
        uint32_t *consumer
        void *ring
        uint32_t *flags

    struct xsk_umem
    struct xsk_socket

    struct xsk_umem_config:
        uint32_t fill_size
        uint32_t comp_size
        uint32_t frame_size
        uint32_t frame_headroom
        uint32_t flags

    struct xsk_socket_config:
        uint32_t rx_size
        uint32_t tx_size
        uint32_t libxdp_flags
        uint32_t xdp_flags
        uint16_t bind_flags

    enum:
        XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD

    uint64_t *xsk_ring_prod__fill_addr(xsk_ring_prod *fill, uint32_t idx)
    const uint64_t *xsk_ring_cons__comp_addr(const xsk_ring_cons *comp, uint32_t idx)
    xdp_desc *xsk_ring_prod__tx_desc(xsk_ring_prod *tx, uint32_t idx)
    const xdp_desc *xsk_ring_cons__rx_desc(const xsk_ring_cons *rx, uint32_t idx)
    int xsk_ring_prod__needs_wakeup(const xsk_ring_prod *r)
    uint32_t xsk_prod_nb_free(xsk_ring_prod *r, uint32_t nb)
    uint32_t xsk_ring_prod__reserve(xsk_ring_prod *prod, uint32_t nb, uint32_t *idx)
    void xsk_ring_prod__submit(xsk_ring_prod *prod, uint32_t nb)
    uint32_t xsk_ring_cons__peek(xsk_ring_cons *cons, uint32_t nb, uint32_t *idx)
    void xsk_ring_cons__release(xsk_ring_cons *cons, uint32_t nb)
    void xsk_ring_cons__cancel(xsk_ring_cons *cons, uint32_t nb)

    int xsk_umem__fd(const xsk_umem *umem)
    int xsk_socket__fd(const xsk_socket *xsk)
    int xsk_socket__update_xskmap(xsk_socket *xsk, int xsks_map_fd)
    int xsk_umem__create(xsk_umem **umem, void *umem_area, uint64_t size,
                         xsk_ring_prod *fill, xsk_ring_cons *comp,
                         const xsk_umem_config *config)
    int xsk_socket__create_shared(xsk_socket **xsk_ptr, const char *ifname,
                                  uint32_t queue_id, xsk_umem *umem,
                                  xsk_ring_cons *rx, xsk_ring_prod *tx,
                                  xsk_ring_prod *fill, xsk_ring_cons *comp,
                                  const xsk_socket_config *config)
    int xsk_umem__delete(xsk_umem *umem)
    void xsk_socket__delete(xsk_socket *xsk)
