/**
 * The waypoint controller (run by the elected agent, as Istio's): every Gateway of a class
 * whose controller is kernway.io/mesh-controller (kernway-waypoint) gets the ServiceAccount,
 * Deployment and Service of agent/cluster/waypoint-manifests.ts in its namespace, owned by
 * the Gateway (the garbage collector removes them with it). Objects are created when
 * missing and put back when their managed fields drift; the Gateway's status says
 * Accepted, and Programmed once the Deployment has an available pod, with the Service's
 * cluster IP as its address.
 */
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { MESH_CONTROLLER, type GatewayStatusOut, type StatusCondition } from '../../k8s/gateway-status.js';
import type { Model } from '../../model/types.js';
import { httpStatusOf, type KubeRequests, type ObjectMeta } from './api.js';
import type { StatusWriter } from './status-writer.js';
import { waypointObjects } from './waypoint-manifests.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const PATHS: Record<string, (ns: string) => string> = {
  ServiceAccount: (ns) => `/api/v1/namespaces/${ns}/serviceaccounts`,
  Service: (ns) => `/api/v1/namespaces/${ns}/services`,
  Deployment: (ns) => `/apis/apps/v1/namespaces/${ns}/deployments`,
};

/** Whether `have` carries everything `want` says (extra fields the API server adds are fine). */
export function covers(have: unknown, want: unknown): boolean {
  if (Array.isArray(want)) return Array.isArray(have) && have.length === want.length && want.every((w, i) => covers(have[i], w));
  if (want && typeof want === 'object') return !!have && typeof have === 'object' && Object.entries(want).every(([k, v]) => covers((have as Json)[k], v));
  return have === want;
}

export interface WaypointControllerOptions {
  image?: string;
  log?: Logger;
}

export class WaypointController {
  /** Objects created or updated since start (tests, logs). */
  readonly totals = { created: 0, updated: 0 };

  constructor(private readonly api: KubeRequests, private readonly writer: StatusWriter, private readonly opts: WaypointControllerOptions = {}) {}

  /** The Gateways the model holds whose class is the mesh controller's. */
  static gatewaysOf(model: Model): Array<{ namespace: string; name: string; generation: number }> {
    const out = [];
    for (const g of model.gateways.values()) {
      if (model.gatewayClasses.get(g.className)?.controllerName !== MESH_CONTROLLER) continue;
      out.push({ namespace: g.meta.namespace, name: g.meta.name, generation: g.meta.generation });
    }
    return out;
  }

  /** One round: every waypoint Gateway's objects made or repaired, and its status written. */
  async reconcile(model: Model): Promise<void> {
    const statuses: GatewayStatusOut[] = [];
    for (const g of WaypointController.gatewaysOf(model)) {
      try {
        statuses.push(await this.reconcileOne(g.namespace, g.name, g.generation));
      } catch (e) {
        this.opts.log?.warn({ err: errorMessage(e), gateway: `${g.namespace}/${g.name}` }, 'waypoint controller: reconcile failed');
      }
    }
    if (statuses.length > 0) await this.writer.write({ gatewayClasses: [], gateways: statuses, routes: [] });
  }

  private async reconcileOne(namespace: string, name: string, generation: number): Promise<GatewayStatusOut> {
    const gw = await this.api.request<{ metadata: ObjectMeta }>('GET', `/apis/gateway.networking.k8s.io/v1/namespaces/${namespace}/gateways/${name}`);
    const objects = waypointObjects({ namespace, name, owner: { name, uid: gw.metadata.uid! }, ...(this.opts.image ? { image: this.opts.image } : {}) });
    const live: Record<string, Json> = {};
    for (const want of objects) {
      const base = PATHS[want.kind as string]!(namespace);
      let have: Json | undefined;
      try {
        have = await this.api.request<Json>('GET', `${base}/${name}`);
      } catch (e) {
        if (httpStatusOf(e) !== 404) throw e;
      }
      if (!have) {
        live[want.kind] = await this.api.request<Json>('POST', base, want);
        this.totals.created++;
        this.opts.log?.info({ kind: want.kind, object: `${namespace}/${name}` }, 'waypoint controller: created');
      } else if (!covers(have, { metadata: { labels: want.metadata.labels, ownerReferences: want.metadata.ownerReferences }, spec: want.spec })) {
        // Put back what kernway manages; what others added to metadata stays.
        const next = { ...have, metadata: { ...have.metadata, labels: { ...have.metadata.labels, ...want.metadata.labels }, ownerReferences: want.metadata.ownerReferences }, ...(want.spec ? { spec: { ...have.spec, ...want.spec } } : {}) };
        live[want.kind] = await this.api.request<Json>('PUT', `${base}/${name}`, next);
        this.totals.updated++;
        this.opts.log?.info({ kind: want.kind, object: `${namespace}/${name}` }, 'waypoint controller: updated');
      } else live[want.kind] = have;
    }
    const available = Number(live.Deployment?.status?.availableReplicas ?? 0);
    const ip = live.Service?.spec?.clusterIP as string | undefined;
    const cond = (type: string, ok: boolean, reason: string, message: string): StatusCondition => ({ type, status: ok ? 'True' : 'False', reason, message, observedGeneration: generation });
    return {
      namespace, name,
      conditions: [
        cond('Accepted', true, 'Accepted', 'a kernway waypoint'),
        available > 0
          ? cond('Programmed', true, 'Programmed', `Deployment ${name}: ${available} available`)
          : cond('Programmed', false, 'Pending', `Deployment ${name} has no available pod yet`),
      ],
      listeners: [],
      ...(ip && ip !== 'None' ? { addresses: [{ type: 'IPAddress', value: ip }] } : {}),
    };
  }
}
