/** `kernway agent`: the node agent. SIGTERM drains (programs stay attached), a second SIGTERM forces. */
import { resolve } from 'node:path';
import { InvalidArgumentError, KernwayError, errorMessage } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { Agent } from '../agent/agent.js';
import { DEFAULTS, cgroup2Root, defaultNodeName, validateAgentOptions } from '../agent/options.js';
import { DEFAULT_SERVICE_CIDR } from '../k8s/service-range.js';
import { keepYoungGenerationSmall } from '../common/heap.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './command.js';

const USAGE = `kernway agent [--kubeconfig PATH | --standalone DIR] [--node-name NAME] [--cgroup PATH] [--bpffs DIR]
                     [--admin-socket PATH] [--metrics-address HOST:PORT] [--sockmap on|off]
                     [--service-cidr CIDR[,CIDR]] [--tcp-metrics on|off] [--tcp-metrics-max-label-sets N]
                     [--feed-address unix:///PATH|HOST:PORT ...]
                     [--map-capacity MAP=N[,MAP=N...]] [--bpf-object PATH]

  --kubeconfig PATH           read the Kubernetes API with this kubeconfig (the default source: without it,
                              KUBECONFIG, ~/.kube/config, or in a pod its in-cluster configuration)
  --standalone DIR            read Services and EndpointSlices from YAML manifests in DIR (watched)
  --node-name NAME            this node's name, for internalTrafficPolicy: Local (default: hostname)
  --cgroup PATH               cgroup v2 whose processes are balanced (default: the cgroup2 root)
  --bpffs DIR                 folder on bpffs for pinned maps and links (default: ${DEFAULTS.bpffs})
  --admin-socket PATH         admin API Unix socket, mode 0600 (default: ${DEFAULTS.adminSocket})
  --metrics-address HOST:PORT /metrics, /healthz, /readyz (default: ${DEFAULTS.metricsAddress})
  --sockmap on|off            same-node acceleration of new pod-to-pod connections (default: on;
                              a pod or namespace opts out with kernway.io/sockmap: "off")
  --tcp-metrics on|off        L4 metrics per connection from the kernel (kernway_tcp_*, Istio labels;
                              default: on; docs/metrics.md)
  --tcp-metrics-max-label-sets N  label sets of kernway_tcp_* on this node before the overflow
                              series (default: 2000)
  --service-cidr CIDR[,CIDR]  the service IP range: Services with cluster IPs outside it are refused
                              (default: ${DEFAULT_SERVICE_CIDR})
  --feed-address ADDRESS      serve the waypoints their namespace's slice of the model over gRPC
                              (docs/feed.md): unix:///PATH (mode 0600, peers checked) and/or
                              HOST:PORT (for pods; callers show a ServiceAccount token checked with
                              TokenReview); repeat the option or separate with commas
  --map-capacity MAP=N,...    max_entries of load balancer maps (kw_svc, kw_slot, kw_backend, kw_maglev,
                              kw_svc_stats, kw_affinity, kw_revnat) when they are first created;
                              pinned maps keep theirs
  --bpf-object PATH           the load balancer's BPF object (default: build/bpf/sock_lb.bpf.o); one whose
                              map layouts changed is an upgrade: pinned maps are migrated (docs/upgrade.md)`;

export const command: Command = {
  summary: 'run the node agent: Service load balancing in the kernel at connect()',
  usage: USAGE,
  async run(argv) {
    const values = parseCommandOptions('agent', USAGE, argv, {
      standalone: { type: 'string' },
      kubeconfig: { type: 'string' },
      'node-name': { type: 'string' },
      cgroup: { type: 'string' },
      bpffs: { type: 'string' },
      'admin-socket': { type: 'string' },
      'metrics-address': { type: 'string' },
      sockmap: { type: 'string' },
      'tcp-metrics': { type: 'string' },
      'tcp-metrics-max-label-sets': { type: 'string' },
      'service-cidr': { type: 'string' },
      'map-capacity': { type: 'string' },
      'bpf-object': { type: 'string' },
      'feed-address': { type: 'string', multiple: true },
    });
    if (!values) return 2;
    keepYoungGenerationSmall(); // before the model is built (common/heap.ts)
    let opts;
    try {
      opts = validateAgentOptions({
        standalone: values.standalone,
        kubeconfig: values.kubeconfig === undefined ? undefined : resolve(values.kubeconfig),
        nodeName: values['node-name'] ?? process.env.NODE_NAME ?? defaultNodeName(),
        cgroup: values.cgroup ?? cgroup2Root(),
        bpffs: values.bpffs ?? DEFAULTS.bpffs,
        adminSocket: values['admin-socket'] ?? DEFAULTS.adminSocket,
        metricsAddress: values['metrics-address'] ?? DEFAULTS.metricsAddress,
        sockmap: values.sockmap,
        tcpMetrics: values['tcp-metrics'],
        tcpMetricsMaxLabelSets: values['tcp-metrics-max-label-sets'],
        serviceCidr: values['service-cidr'],
        feedAddresses: values['feed-address'],
        capacities: values['map-capacity'] === undefined ? undefined : parseCapacities(values['map-capacity']),
        objectPath: values['bpf-object'] === undefined ? undefined : resolve(values['bpf-object']),
      });
    } catch (e) {
      if (e instanceof InvalidArgumentError || e instanceof KernwayError) {
        console.error(`kernway agent: ${e.message} [${e.code}]`);
        return 2;
      }
      throw e;
    }
    const log = createLogger('kernway-agent');
    const agent = new Agent(opts, log);
    // The elected agent writes the status the waypoints' routing tables are built on (the model's).
    if (opts.standalone === undefined) agent.enableClusterDuties((await import('../model/route-status.js')).clusterStatusOf);

    const done = drainOnSignals(() => agent.drain(), log);
    try {
      await agent.start();
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'KW_INTERNAL';
      log.fatal({ code, err: errorMessage(e) }, 'agent failed to start');
      console.error(`kernway agent: ${errorMessage(e)} [${code}]`);
      await agent.drain().catch(() => undefined);
      return 1;
    }
    return done;
  },
};

/**
 * The first SIGTERM or SIGINT starts `drain` (the promise gives 0 when it is done, 1 when
 * it failed); a second one while draining exits the process at once with status 1.
 */
export function drainOnSignals(drain: () => Promise<void>, log: Logger): Promise<number> {
  let signals = 0;
  return new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        log.info({ signal: sig }, 'draining (send again to force)');
        drain().then(() => resolve(0), (e: unknown) => { log.error({ err: errorMessage(e) }, 'drain failed'); resolve(1); });
      } else {
        log.warn({ signal: sig }, 'forced shutdown');
        process.exit(1);
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** 'kw_svc=64,kw_slot=512' -> { kw_svc: 64, kw_slot: 512 } (names and values checked by validateAgentOptions). */
function parseCapacities(v: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of v.split(',')) {
    const m = /^([a-z_]+)=(\d{1,10})$/.exec(part.trim());
    if (!m) throw new InvalidArgumentError('--map-capacity', 'MAP=N[,MAP=N...] with N a positive integer', v);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}
