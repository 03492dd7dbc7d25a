/**
 * The WaypointFeed gRPC service, apart from the wire types in protocol.ts so that a process
 * that parses a --feed-address but serves or reads no feed never loads grpc-js and
 * proto-loader (≈ 15 MiB of RSS; docs/agent-model.md).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FEED_PROTO } from './protocol.js';

let loaded: grpc.GrpcObject | undefined;
/** The WaypointFeed service definition and client constructor (loaded once). */
export function feedService(): { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  if (!loaded) {
    const def = protoLoader.loadSync(FEED_PROTO, { keepCase: true, longs: String, defaults: true, oneofs: true });
    loaded = grpc.loadPackageDefinition(def);
  }
  const Client = ((loaded.kernway as grpc.GrpcObject).feed as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const ctor = Client.WaypointFeed as grpc.ServiceClientConstructor;
  return { service: ctor.service, Client: ctor };
}
