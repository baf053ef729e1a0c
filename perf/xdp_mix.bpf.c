// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Mixed traffic for the soak test (tests/test_soak.py), run by perf/livegen.py: BPF_PROG_RUN
 * in live-frames mode hands this program a copy of a 3000-byte template once per repetition;
 * it turns frame k into kind k % MIX_KINDS and sends it with XDP_TX into its veth peer, a
 * switch port.  Pages are recycled without being reset to the template, so every header
 * field is written for every frame: EtherType 0x88b5 (local experimental: the receiving
 * hosts' stacks drop it at once) unless the kind says otherwise.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TEMPLATE_LEN 3000
#define MIX_KINDS 16

/* Frames generated per kind (slots 0..15), and in all (slot 16), per CPU: the test knows
 * exactly what it sent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MIX_KINDS + 1);
	__type(key, __u32);
	__type(value, __u64);
} mix_count SEC(".maps");

/* The two known unicast destinations, hosts A and B. */
struct mix_cfg {
	__u8 dst_a[6];
	__u8 dst_b[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mix_cfg);
} mix_cfg SEC(".maps");

static __always_inline int set_len(struct xdp_md *ctx, int len)
{
	return bpf_xdp_adjust_tail(ctx, len - TEMPLATE_LEN);
}

SEC("xdp")
int xdp_mix(struct xdp_md *ctx)
{
	__u32 zero = 0, all = MIX_KINDS, kind;
	__u64 *total = bpf_map_lookup_elem(&mix_count, &all);
	struct mix_cfg *cfg = bpf_map_lookup_elem(&mix_cfg, &zero);
	__u64 k, *n;
	int len = 60;
	__u8 *p;

	if (!total || !cfg)
		return XDP_ABORTED;
	k = (*total)++;		/* per-CPU slot: no atomic needed */
	kind = (__u32)(k % MIX_KINDS);
	n = bpf_map_lookup_elem(&mix_count, &kind);
	if (!n)
		return XDP_ABORTED;
	*n += 1;

	/* Kinds: 0..5 unicast to host A (the template's destination), 6..7 unicast to host B,
	 * 8 broadcast, 9 multicast, 10 unknown unicast, 11 header only (14 bytes, the shortest
	 * frame XDP can carry), 12 short (42 bytes, unpadded), 13 oversize (3000 bytes: more
	 * than a 2048-byte UMEM frame), 14 a reserved EtherType (0xffff), 15 1514 bytes. */
	switch (kind) {
	case 11:
		len = 14;
		break;
	case 12:
		len = 42;
		break;
	case 13:
		len = TEMPLATE_LEN;
		break;
	case 15:
		len = 1514;
		break;
	}
	if (len != TEMPLATE_LEN && set_len(ctx, len))
		return XDP_ABORTED;

	p = (__u8 *)(long)ctx->data;
	if ((void *)(p + 14) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	/* Sources: 64 addresses 02:5a:5a:00:00:00..3f, learned on the generator's port. */
	p[6] = 0x02; p[7] = 0x5a; p[8] = 0x5a; p[9] = 0; p[10] = 0;
	p[11] = (__u8)((k >> 4) & 0x3f);
	p[12] = 0x88; p[13] = 0xb5;
	switch (kind) {
	case 6: case 7:
		__builtin_memcpy(p, cfg->dst_b, 6);
		break;
	case 8:
		__builtin_memset(p, 0xff, 6);
		break;
	case 9:			/* mDNS's group */
		p[0] = 0x01; p[1] = 0x00; p[2] = 0x5e; p[3] = 0x00; p[4] = 0x00; p[5] = 0xfb;
		break;
	case 10:		/* a new destination every time */
		p[0] = 0x02; p[1] = 0xee; p[2] = (__u8)(k >> 24); p[3] = (__u8)(k >> 16);
		p[4] = (__u8)(k >> 8); p[5] = (__u8)k;
		break;
	case 14:
		__builtin_memcpy(p, cfg->dst_a, 6);
		p[12] = 0xff; p[13] = 0xff;
		break;
	default:
		__builtin_memcpy(p, cfg->dst_a, 6);
	}
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
