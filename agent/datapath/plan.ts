/**
 * Reconcile planning, apart from applying: what to write to a map and what to delete
 * from it, computed from what the map holds (as last applied or read back) and what is
 * wanted — pure, so planners are tested without a kernel (test/datapath/plan.test.ts).
 * Appliers (sockmap.ts setLocalPods, policy.ts applyIdentities and applyPolicies) then
 * write the plan in its order: upserts first, deletions after, so that a reader never
 * sees an entry missing that is wanted both before and after. The other planners:
 * policy.ts planIdentities and planPolicies (tables, destinations, CIDR classes) and
 * service-plan.ts planServices (the load balancer's backend sets).
 */

/** Entries of one map to write and to remove; keys and values in the caller's form (hex, numbers). */
export interface MapPlan<K, V> {
  /** New or changed entries, with whether the key is new. */
  upserts: Array<{ key: K; value: V; added: boolean }>;
  /** Keys held but no longer wanted. */
  removals: K[];
}

/** Plans `have` -> `want` (values compared with ===; encode structs to a string or number first). */
export function planMap<K, V>(have: ReadonlyMap<K, V>, want: ReadonlyMap<K, V>): MapPlan<K, V> {
  const upserts: MapPlan<K, V>['upserts'] = [];
  for (const [key, value] of want) {
    const cur = have.get(key);
    if (cur === value && (cur !== undefined || have.has(key))) continue;
    upserts.push({ key, value, added: !have.has(key) });
  }
  const removals: K[] = [];
  for (const key of have.keys()) if (!want.has(key)) removals.push(key);
  return { upserts, removals };
}
