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
#define MIX_KINDS 20
#define VID_ALLOWED 10		/* the generator's port is a trunk carrying VLANs 1 and 10 */
#define VID_NOT_ALLOWED 30
#define VID_OUTER 100		/* 802.1ad outer tag: payload to the switch */

/* Frames generated per kind (slots 0..19), and in all (slot 20), per CPU: the test knows
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
	 * than a 2048-byte UMEM frame), 14 a reserved EtherType (0xffff), 15 1514 bytes.
	 * 802.1Q (64 bytes: 60 and a tag): 16 tagged VID 10 (allowed, PCP 5) to host B,
	 * 17 tagged VID 30 (not allowed), 18 priority-tagged (VID 0, PCP 3) to host A,
	 * 19 an 802.1ad outer tag (0x88a8, VID 100) to host B. */
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
	case 16: case 17: case 18: case 19:
		len = 64;
		break;
	}
	if (len != TEMPLATE_LEN && set_len(ctx, len))
		return XDP_ABORTED;

	p = (__u8 *)(long)ctx->data;
	if ((void *)(p + 14) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	if (kind >= 16) {	/* a tag (TPID, TCI), then the EtherType */
		if ((void *)(p + 18) > (void *)(long)ctx->data_end)
			return XDP_ABORTED;
		p[12] = kind == 19 ? 0x88 : 0x81;
		p[13] = kind == 19 ? 0xa8 : 0x00;
		switch (kind) {
		case 16:
			p[14] = (5 << 5) | (VID_ALLOWED >> 8);
			p[15] = VID_ALLOWED & 0xff;
			break;
		case 17:
			p[14] = VID_NOT_ALLOWED >> 8;
			p[15] = VID_NOT_ALLOWED & 0xff;
			break;
		case 18:
			p[14] = 3 << 5;
			p[15] = 0;
			break;
		default:
			p[14] = VID_OUTER >> 8;
			p[15] = VID_OUTER & 0xff;
		}
		p[16] = 0x88; p[17] = 0xb5;
		__builtin_memcpy(p, kind == 18 ? cfg->dst_a : cfg->dst_b, 6);
		goto src;
	}
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
src:
	/* Sources: 64 addresses 02:5a:5a:00:00:00..3f, learned on the generator's port (in
	 * VLAN 1, and in VLAN 10 from kind 16). */
	p[6] = 0x02; p[7] = 0x5a; p[8] = 0x5a; p[9] = 0; p[10] = 0;
	p[11] = (__u8)((k >> 4) & 0x3f);
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
