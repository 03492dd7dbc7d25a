/** `kernway demo`: kernway end to end on this machine (needs root): on the lab cluster, or on one lab node. */
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors.js';
import type { Command } from './command.js';

const USAGE = `kernway demo [--mode cluster|node]

  --mode cluster   the lab cluster (Kubernetes 1.20, 2 lab nodes): kubectl apply -k deploy/, the
                   DaemonSet's agents, an app, kernel-balanced traffic, a Gateway and HTTPRoute
                   with the status the elected agent writes (about a minute); the default when
                   the lab's Kubernetes (make kube) and ../shared's Gateway API CRDs are here
  --mode node      one lab node: the agent on standalone manifests, traffic spread over three
                   backends, a backend removed live, /metrics (a few seconds)`;

export const command: Command = {
  summary: 'show kernway end to end: on the lab cluster (deploy/, DaemonSet, Gateway status) or one lab node; then clean up',
  usage: USAGE,
  async run(argv) {
    let mode: string | undefined;
    try {
      ({ values: { mode } } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: { mode: { type: 'string' } } }));
      if (mode !== undefined && mode !== 'cluster' && mode !== 'node') throw new Error(`--mode: expected cluster or node, got ${JSON.stringify(mode)}`);
    } catch (e) {
      console.error(`kernway demo: ${errorMessage(e)}\nusage: ${USAGE}`);
      return 2;
    }
    const { clusterDemoUnavailable, runClusterDemo } = await import('../agent/demo/cluster-demo.js');
    const why = clusterDemoUnavailable();
    if (mode === 'cluster' && why) {
      console.error(`kernway demo: --mode cluster: ${why}`);
      return 1;
    }
    if (mode === 'cluster' || (mode === undefined && !why)) {
      await runClusterDemo();
      return 0;
    }
    if (mode === undefined) console.log(`== node mode (cluster mode needs: ${why})`);
    const { runDemo } = await import('../agent/demo/demo.js');
    await runDemo();
    return 0;
  },
};
