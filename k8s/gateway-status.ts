/**
 * The status kernway writes back to the Gateway API objects it serves, as computed from the
 * model (model/route-status.ts) and written by the elected agent
 * (agent/cluster/status-writer.ts). Conditions carry no lastTransitionTime here: the writer
 * keeps the one already on the object while the condition's status is unchanged.
 */
import type { ParentRef } from './gateway-api-types.js';

/** The controllers kernway answers for (GatewayClass spec.controllerName). */
export const GATEWAY_CONTROLLER = 'kernway.io/gateway-controller';
export const MESH_CONTROLLER = 'kernway.io/mesh-controller';
export const KERNWAY_CONTROLLERS: readonly string[] = [GATEWAY_CONTROLLER, MESH_CONTROLLER];

export interface StatusCondition { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string; observedGeneration: number }

export interface GatewayClassStatusOut { name: string; conditions: StatusCondition[] }
export interface ListenerStatusOut { name: string; attachedRoutes: number; conditions: StatusCondition[]; supportedKinds?: Array<{ group: string; kind: string }> }
export interface GatewayStatusOut { namespace: string; name: string; addresses?: Array<{ type: string; value: string }>; conditions: StatusCondition[]; listeners: ListenerStatusOut[] }
export interface RouteParentStatusOut { parentRef: ParentRef; controllerName: string; conditions: StatusCondition[] }
/** `parents`: kernway's entries only; an empty list removes kernway's entries from the route. */
export interface RouteStatusOut { namespace: string; name: string; parents: RouteParentStatusOut[] }

/** A BackendTrafficPolicy's status.ancestors as kernway computes them (model/traffic-policy.ts): one per targetRef. */
export interface PolicyAncestorStatusOut { ancestorRef: { group: string; kind: string; namespace: string; name: string }; controllerName: string; conditions: StatusCondition[] }
export interface PolicyStatusOut { namespace: string; name: string; ancestors: PolicyAncestorStatusOut[] }

export interface ClusterStatus {
  gatewayClasses: GatewayClassStatusOut[];
  gateways: GatewayStatusOut[];
  routes: RouteStatusOut[];
  /** kernway.io BackendTrafficPolicies (status.ancestors). */
  trafficPolicies?: PolicyStatusOut[];
}
