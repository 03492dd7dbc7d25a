// SPDX-License-Identifier: GPL-2.0
/*
 * The socket load balancer as a later build whose map layout changed: kw_revnat's value
 * gains a field (struct kw_revnat_val.gen, set to 2 by every new entry). Upgrade tests
 * (test/lb/upgrade.test.ts, bench/chaos) start the agent on bpf/sock_lb.bpf.c, then on
 * this object: the loader migrates kw_revnat into a new map and swaps the programs in
 * place (docs/upgrade.md).
 */
#define KW_TEST_REVNAT_GEN 2
#include "../sock_lb.bpf.c"
