/**
 * The policy engine as the agent runs it: with every model snapshot, the pods that changed
 * (the model's change set: a burst of pods costs in proportion to the pods, not pods x
 * batches), namespaces and AuthorizationPolicies of the model (checked by the kind registry when they arrived,
 * so a bad policy rejects its file and is named in the agent's problems).
 *
 *   // in Agent.start(), after loadSockLb() (its connect programs must be attached first):
 *   this.policy = await PolicyRuntime.start({ nodeName: o.nodeName, cgroupPath: o.cgroup, bpffsDir: o.bpffs, log: this.log });
 *   // with every snapshot (the first one too):
 *   this.policy.onSnapshot(s);
 *   // admin: this.admin.route('GET', '/v1/policies', () => this.policy.report());
 *   // drain(): await this.policy.close();
 */
import type { Logger } from '../../common/log.js';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import type { Model, ModelChange } from '../../model/types.js';
import { PolicyEngine, type PolicyEngineOptions, type PolicyReport, type PolicyUpdateResult } from './policy-engine.js';

/** What the runtime reads of a model snapshot. */
export interface PolicySnapshotInput {
  model: Pick<Model, 'pods' | 'namespaces' | 'policies'>;
  /** What changed (undefined: treat everything as changed). */
  change?: Pick<ModelChange, 'policies'> & Partial<Pick<ModelChange, 'pods' | 'namespaces'>>;
}

/** The model's policies in a stable order (by origin: file, then document). */
export function policiesOf(model: Pick<Model, 'policies'>): AuthorizationPolicy[] {
  return [...model.policies.values()].sort((a, b) =>
    a.origin.file < b.origin.file ? -1 : a.origin.file > b.origin.file ? 1 : a.origin.index - b.origin.index);
}

export class PolicyRuntime {
  private last: readonly AuthorizationPolicy[] = [];
  /** The last update failed: the next one reads the policies again whatever changed. */
  private failed = false;
  private constructor(readonly engine: PolicyEngine, private readonly log: Logger | undefined) {}

  static async start(opts: PolicyEngineOptions): Promise<PolicyRuntime> {
    return new PolicyRuntime(await PolicyEngine.start(opts), opts.log);
  }

  /**
   * One snapshot: pods, namespaces and policies. An update that fails is logged and leaves
   * the last good state in the maps; the agent keeps running.
   */
  onSnapshot(s: PolicySnapshotInput): PolicyUpdateResult | undefined {
    const policies = s.change && s.change.policies.size === 0 && !this.failed ? this.last : policiesOf(s.model);
    const same = policies.length === this.last.length && policies.every((p, i) => p === this.last[i]);
    try {
      // Only the pods that changed are looked at; namespaces only when some changed.
      const c = s.change;
      const r = this.engine.update({
        pods: s.model.pods, ...(c?.pods && !this.failed ? { changedPods: c.pods } : {}),
        ...(c?.namespaces && c.namespaces.size === 0 && !this.failed ? {} : { namespaces: s.model.namespaces }),
        ...(same ? {} : { policies }),
      });
      this.last = policies;
      this.failed = false;
      return r;
    } catch (e) {
      this.failed = true;
      this.log?.error({ code: (e as { code?: string }).code, err: (e as Error).message }, 'policy: update failed; the maps keep the last good state');
      return undefined;
    }
  }

  report(): PolicyReport {
    return this.engine.report();
  }

  /** Stops the engine; the programs stay attached with the last state (pinned). */
  async close(): Promise<void> {
    await this.engine.close();
  }
}
