# Atomics and compiler hints (includes/atomics.h): the FDB's seqlock, the single-writer
# counters, the event rings and the grace periods use these, never plain shared accesses.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "includes/atomics.h" nogil:
    bint PYXSW_DEBUG
    void pyxsw_check(bint ok, const char *what)
    uint32_t pyxsw_load_acq32(const uint32_t *p)
    uint32_t pyxsw_load_rlx32(const uint32_t *p)
    void pyxsw_store_rel32(uint32_t *p, uint32_t v)
    void pyxsw_store_rlx32(uint32_t *p, uint32_t v)
    int pyxsw_load_int(const int *p)
    void pyxsw_store_int(int *p, int v)
    uint64_t pyxsw_load_acq64(const uint64_t *p)
    void pyxsw_store_rel64(uint64_t *p, uint64_t v)
    uint64_t pyxsw_load64(const uint64_t *p)
    void pyxsw_store64(uint64_t *p, uint64_t v)
    void *pyxsw_load_ptr(void **p)
    void pyxsw_store_ptr(void **p, void *v)
    void pyxsw_fence_acq()
    void pyxsw_fence_rel()
    void pyxsw_fence_seq()
    void pyxsw_cpu_relax()
    void pyxsw_prefetch(const void *p)
    uint64_t pyxsw_load_mac8(const uint8_t *p)
    int pyxsw_ctz64(uint64_t m)
    uint64_t pyxsw_rdtsc()
    bint pyxsw_likely(bint x)
    bint pyxsw_unlikely(bint x)
