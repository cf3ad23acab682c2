// The Node.js client of shoal's HTTP/JSON gateway, protocol v1 (docs/gateway.md).

export { Client, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS } from './client.js';
export { Member, serveMember } from './member.js';
export { GatewayError, Kind, Rejection } from './errors.js';
export { BadValueError, Crash, MAX_DEPTH, Pid, fromJSON, parse, stringify } from './jsonmap.js';

/** The gateway protocol this client speaks (the /v1/ paths). */
export const PROTOCOL_VERSION = 1;
