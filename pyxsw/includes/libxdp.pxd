# C declarations from <xdp/libxdp.h>, <bpf/libbpf.h>, <bpf/bpf.h> and <linux/if_link.h>:
# loading and attaching pyxsw's XDP program, and its maps; telling which program is attached.
from libc.stdint cimport uint8_t, uint32_t
from pyxsw.includes.system cimport va_list

cdef extern from "<bpf/libbpf.h>" nogil:
    struct bpf_object
    struct bpf_map
    bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)
    const char *bpf_map__name(const bpf_map *map)
    int bpf_map__type(const bpf_map *map)
    uint32_t bpf_map__key_size(const bpf_map *map)
    uint32_t bpf_map__value_size(const bpf_map *map)
    uint32_t bpf_map__max_entries(const bpf_map *map)
    uint32_t bpf_map__map_flags(const bpf_map *map)
    bint bpf_map__is_internal(const bpf_map *map)
    int bpf_map__reuse_fd(bpf_map *map, int fd)
    const void *bpf_map__initial_value(bpf_map *map, size_t *psize)
    int bpf_map__set_initial_value(bpf_map *map, const void *data, size_t size)
    int libbpf_num_possible_cpus()
    ctypedef int (*libbpf_print_fn_t)(int level, const char *fmt, va_list ap)
    libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn)

    struct bpf_xdp_query_opts:
        size_t sz
        uint32_t prog_id            # outputs, all of them
        uint32_t drv_prog_id
        uint32_t hw_prog_id
        uint32_t skb_prog_id
        uint8_t attach_mode         # XDP_ATTACHED_*
    struct bpf_xdp_attach_opts:
        size_t sz
        int old_prog_fd
    int bpf_xdp_query(int ifindex, int flags, bpf_xdp_query_opts *opts)
    int bpf_xdp_detach(int ifindex, uint32_t flags, const bpf_xdp_attach_opts *opts)

cdef extern from "<bpf/bpf.h>" nogil:
    struct bpf_map_create_opts:
        size_t sz
        uint32_t map_flags
    int bpf_map_create(int map_type, const char *name, uint32_t key_size, uint32_t value_size,
                       uint32_t max_entries, const bpf_map_create_opts *opts)
    int bpf_map_lookup_elem(int fd, const void *key, void *value)
    int bpf_map_update_elem(int fd, const void *key, const void *value, unsigned long long flags)
    int bpf_map_delete_elem(int fd, const void *key)
    int bpf_map_get_next_key(int fd, const void *key, void *next_key)
    int bpf_prog_get_fd_by_id(uint32_t id)
    int bpf_obj_get_info_by_fd(int bpf_fd, void *info, uint32_t *info_len)
    enum:
        BPF_ANY
        BPF_NOEXIST
        BPF_EXIST

cdef extern from "<linux/bpf.h>" nogil:
    enum:
        BPF_OBJ_NAME_LEN            # 16: the kernel keeps 15 characters of a name
    struct bpf_prog_info:
        uint32_t id
        char name[16]               # BPF_OBJ_NAME_LEN

cdef extern from "<linux/if_link.h>" nogil:
    enum:
        XDP_FLAGS_SKB_MODE
        XDP_FLAGS_DRV_MODE
        XDP_FLAGS_REPLACE
        XDP_ATTACHED_NONE
        XDP_ATTACHED_DRV
        XDP_ATTACHED_SKB
        XDP_ATTACHED_HW
        XDP_ATTACHED_MULTI

cdef extern from "<xdp/libxdp.h>" nogil:
    enum xdp_attach_mode:
        XDP_MODE_UNSPEC
        XDP_MODE_NATIVE
        XDP_MODE_SKB
        XDP_MODE_HW

    enum libxdp_print_level:
        LIBXDP_WARN
        LIBXDP_INFO
        LIBXDP_DEBUG

    ctypedef int (*libxdp_print_fn_t)(libxdp_print_level level, const char *fmt, va_list ap)
    libxdp_print_fn_t libxdp_set_print(libxdp_print_fn_t fn)

    struct xdp_program
    struct xdp_multiprog

    long libxdp_get_error(const void *ptr)
    int libxdp_strerror(int err, char *buf, size_t size)
    xdp_program *xdp_program__open_file(const char *filename, const char *section_name, void *opts)
    void xdp_program__close(xdp_program *xdp_prog)
    int xdp_program__set_xdp_frags_support(xdp_program *prog, bint frags)
    const char *xdp_program__name(const xdp_program *xdp_prog)
    uint32_t xdp_program__id(const xdp_program *xdp_prog)
    int xdp_program__fd(const xdp_program *xdp_prog)
    bpf_object *xdp_program__bpf_obj(xdp_program *xdp_prog)
    int xdp_program__attach(xdp_program *xdp_prog, int ifindex, xdp_attach_mode mode, unsigned int flags)
    int xdp_program__detach(xdp_program *xdp_prog, int ifindex, xdp_attach_mode mode, unsigned int flags)

    xdp_multiprog *xdp_multiprog__get_from_ifindex(int ifindex)
    xdp_program *xdp_multiprog__next_prog(const xdp_program *prog, const xdp_multiprog *mp)
    void xdp_multiprog__close(xdp_multiprog *mp)
    int xdp_multiprog__detach(xdp_multiprog *mp)
    xdp_attach_mode xdp_multiprog__attach_mode(const xdp_multiprog *mp)
    xdp_program *xdp_multiprog__main_prog(const xdp_multiprog *mp)
    bint xdp_multiprog__is_legacy(const xdp_multiprog *mp)
