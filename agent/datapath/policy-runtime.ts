/**
 * The policy engine as the agent runs it in standalone mode: the engine, plus the
 * PolicySource reading AuthorizationPolicies from the agent's manifest directory. The
 * agent hands over each model snapshot (pods, namespaces); policies arrive on their own.
 *
 *   // in Agent.start(), after loadSockLb() (its connect programs must be attached first):
 *   this.policy = await PolicyRuntime.start({ standalone: o.standalone, nodeName: o.nodeName,
 *     cgroupPath: o.cgroup, bpffsDir: o.bpffs, debounceMs: o.debounceMs, log: this.log });
 *   // with every model snapshot (the first one too):
 *   this.policy.onModel(s.model);
 *   // admin: this.admin.route('GET', '/v1/policies', () => this.policy.report());
 *   // drain(): await this.policy.close();
 */
import type { Logger } from '../../common/log.js';
import type { Model } from '../model/types.js';
import { POLICIES, PolicySource, type PolicySnapshot } from '../policy/source.js';
import { PolicyEngine, type PolicyEngineOptions, type PolicyReport } from './policy-engine.js';

export interface PolicyRuntimeOptions extends PolicyEngineOptions {
  /** The manifest directory (the agent's --standalone). */
  standalone: string;
  debounceMs?: number;
}

export class PolicyRuntime {
  private modelSeen = false;
  private constructor(readonly engine: PolicyEngine, private readonly source: PolicySource, private readonly log: Logger | undefined) {}

  static async start(opts: PolicyRuntimeOptions): Promise<PolicyRuntime> {
    const engine = await PolicyEngine.start(opts);
    const source = new PolicySource(opts.standalone, { ...(opts.log ? { log: opts.log } : {}), ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}) });
    let first: PolicySnapshot;
    try {
      first = await source.start();
    } catch (e) {
      source.close();
      await engine.close();
      throw e;
    }
    const rt = new PolicyRuntime(engine, source, opts.log);
    engine.update({ policies: first.policies });
    source.on(POLICIES, (s: PolicySnapshot) => rt.safely(() => engine.update({ policies: s.policies })));
    return rt;
  }

  /** A model snapshot: pods and namespaces (the model's maps are read, not kept). */
  onModel(model: Pick<Model, 'pods' | 'namespaces'>): void {
    this.modelSeen = true;
    this.safely(() => this.engine.update({ pods: model.pods, namespaces: model.namespaces }));
  }

  report(): PolicyReport {
    return this.engine.report();
  }

  /** Stops reading; the programs stay attached with the last state (pinned). */
  async close(): Promise<void> {
    this.source.close();
    await this.engine.close();
  }

  /** An update that fails leaves the last good state in the maps; the agent keeps running. */
  private safely(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      this.log?.error({ code: (e as { code?: string }).code, err: (e as Error).message, modelSeen: this.modelSeen }, 'policy: update failed; the maps keep the last good state');
    }
  }
}
