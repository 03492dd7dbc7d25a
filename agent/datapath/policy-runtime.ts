/**
 * The policy engine as the agent runs it in standalone mode. The agent's StandaloneSource
 * checks AuthorizationPolicies with the others (its `validate` option: a file with a bad
 * policy is rejected whole, named in the agent's problems) and hands over, with each
 * snapshot, the model (pods, namespaces) and the directory's objects, from which the
 * policies are taken (each file read and parsed once, policies parsed once per object).
 *
 *   this.source = new StandaloneSource(o.standalone, { log, debounceMs, validate: validatePolicyObject });
 *   // in Agent.start(), after loadSockLb() (its connect programs must be attached first):
 *   this.policy = await PolicyRuntime.start({ nodeName: o.nodeName, cgroupPath: o.cgroup, bpffsDir: o.bpffs, log: this.log });
 *   // with every snapshot (the first one too):
 *   this.policy.onSnapshot(s);
 *   // admin: this.admin.route('GET', '/v1/policies', () => this.policy.report());
 *   // drain(): await this.policy.close();
 */
import type { Logger } from '../../common/log.js';
import type { SourcedObject } from '../../k8s/types.js';
import type { Model } from '../../model/types.js';
import { policiesOf } from '../../k8s/policy.js';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import { PolicyEngine, type PolicyEngineOptions, type PolicyReport, type PolicyUpdateResult } from './policy-engine.js';

/** What the runtime reads of a StandaloneSnapshot. */
export interface PolicySnapshotInput {
  model: Pick<Model, 'pods' | 'namespaces'>;
  manifests: { objects: readonly SourcedObject[] };
}

export class PolicyRuntime {
  private last: readonly AuthorizationPolicy[] = [];
  private constructor(readonly engine: PolicyEngine, private readonly log: Logger | undefined) {}

  static async start(opts: PolicyEngineOptions): Promise<PolicyRuntime> {
    return new PolicyRuntime(await PolicyEngine.start(opts), opts.log);
  }

  /**
   * One snapshot: pods, namespaces and policies. An update that fails is logged and leaves
   * the last good state in the maps; the agent keeps running.
   */
  onSnapshot(s: PolicySnapshotInput): PolicyUpdateResult | undefined {
    const policies = policiesOf(s.manifests.objects);
    const same = policies.length === this.last.length && policies.every((p, i) => p === this.last[i]);
    try {
      const r = this.engine.update({ pods: s.model.pods, namespaces: s.model.namespaces, ...(same ? {} : { policies }) });
      this.last = policies;
      return r;
    } catch (e) {
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
