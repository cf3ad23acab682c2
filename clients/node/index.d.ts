// Types of @shoal/gateway, the Node.js client of shoal's HTTP/JSON gateway (protocol v1).

/** The gateway protocol this client speaks (the /v1/ paths). */
export const PROTOCOL_VERSION: 1;
/** How long a call waits unless told otherwise: 5000 ms. */
export const DEFAULT_TIMEOUT_MS: 5000;
/** The longest timeout the gateway accepts: 300000 ms. */
export const MAX_TIMEOUT_MS: 300000;
/** The deepest nesting of arrays and maps the mapping accepts, both ways. */
export const MAX_DEPTH: 256;

/** The address of one shoal process. JSON: {"$pid": [node, creation, serial]}. */
export class Pid {
  constructor(node: string, creation: number, serial: number);
  readonly node: string;
  readonly creation: number;
  readonly serial: number;
  /** Reads `<node.creation.serial>` (brackets optional). */
  static parse(text: string): Pid;
  toString(): string;
  equals(other: unknown): boolean;
}

/** The exit reason of a process whose handler raised. JSON: {"$crash": [type, message, traceback]}. */
export class Crash {
  constructor(type: string, message: string, traceback: string);
  readonly type: string;
  readonly message: string;
  readonly traceback: string;
}

/**
 * A value in the gateway's JSON mapping. Bytes ($bin) read as Uint8Array; a
 * map whose keys are not all strings ($kv) reads as a Map.
 */
export type Value =
  | null
  | boolean
  | number
  | string
  | Pid
  | Crash
  | Uint8Array
  | Value[]
  | Map<Value, Value>
  | { [key: string]: Value };

/** Thrown for a value the mapping cannot write, or JSON it cannot read. */
export class BadValueError extends TypeError {}

/**
 * Writes a value as JSON text in the gateway's mapping (bigints and undefined
 * are accepted too; a Map's keys must be strings or Uint8Array).
 */
export function stringify(value: unknown): string;
/** Reads JSON text in the gateway's mapping. */
export function parse(text: string): Value;
/** Maps a value JSON.parse returned to its typed form. */
export function fromJSON(raw: unknown): Value;

export const Kind: Readonly<{
  BAD_REQUEST: 'bad_request';
  UNAUTHORIZED: 'unauthorized';
  FORBIDDEN: 'forbidden';
  NO_MEMBERS: 'no_members';
  NOPROC: 'noproc';
  NOT_FOUND: 'not_found';
  METHOD_NOT_ALLOWED: 'method_not_allowed';
  TOO_LARGE: 'too_large';
  UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type';
  REJECTED: 'rejected';
  CRASH: 'crash';
  EXITED: 'exited';
  UNENCODABLE: 'unencodable';
  INTERNAL: 'internal';
  OVERLOADED: 'overloaded';
  NODEDOWN: 'nodedown';
  UNAVAILABLE: 'unavailable';
  TIMEOUT: 'timeout';
  CONNECTION: 'connection';
  CANCELED: 'canceled';
  BAD_RESPONSE: 'bad_response';
}>;
export type ErrorKind = (typeof Kind)[keyof typeof Kind];

/** Every failure of a Client method. */
export class GatewayError extends Error {
  readonly kind: ErrorKind | string;
  /** The HTTP status; 0 when no answer came from the gateway. */
  readonly status: number;
  /** True only when the request provably did not start: it may be sent again. */
  readonly retrySafe: boolean;
  /** A crash's exception class, when known. */
  readonly remoteType: string | null;
  /** The pid that failed, when known. */
  readonly member: Pid | null;
  /** The gateway's (or the client's) explanation. */
  readonly detail: string;
}

/** Thrown by a member handler to reject a request: the caller gets kind "rejected". */
export class Rejection extends Error {
  constructor(message: string);
}

export type Strategy = 'local_first' | 'random' | 'round_robin' | 'least_loaded' | 'hash';

export interface CallOptions {
  /** For all attempts together, sent to the gateway as the call's timeout. Default 5000. */
  timeoutMs?: number;
  /** Aborts the wait (kind "canceled", or "timeout" for a TimeoutError reason). */
  signal?: AbortSignal;
  /** Default "local_first". */
  strategy?: Strategy;
  /** The key of the "hash" strategy. */
  key?: string;
  /** Let the gateway retry also when delivery is unknown. */
  idempotent?: boolean;
}

export interface Members {
  scope: string;
  group: string;
  members: Pid[];
  routable: Pid[];
}

/** One message the gateway forwards to a member handler. */
export interface Request {
  kind: 'call' | 'cast' | 'info';
  body: Value;
  /** When the caller gives up (calls only). */
  deadline: Date | null;
  caller: Pid | null;
  member: Pid | null;
  registration: string;
  /** Aborts at the deadline, or when the gateway gives up on the callback. */
  signal: AbortSignal;
}

/** Returns the reply to a call; throw a Rejection to reject, anything else is a crash. */
export type Handler = (request: Request) => unknown | Promise<unknown>;

export interface MemberOptions {
  /** Calls at a time, 1 to 1000 (default: the gateway's, 8). */
  concurrency?: number;
  /** Register the proxy process under this local name. */
  name?: string;
  /** The callback server's address (default 127.0.0.1). */
  host?: string;
  /** Its port (default 0: a free one). */
  port?: number;
  /** The URL the gateway calls back, when it reaches the server by another address (default http://HOST:PORT/shoal). */
  callbackUrl?: string;
  /** Aborting it closes the member gracefully. */
  signal?: AbortSignal;
}

export class Member {
  readonly id: string;
  readonly pid: Pid | null;
  /** Why the member stopped on its own; null after close(). */
  readonly error: GatewayError | null;
  /** Resolves when the member has stopped. */
  readonly closed: Promise<void>;
  /** Deletes the registration (draining calls in flight), then stops; resolves to the calls drained. */
  close(): Promise<number>;
}

export class Client {
  /** url and token default to SHOAL_GATEWAY_URL and SHOAL_GATEWAY_TOKEN. */
  constructor(options?: { url?: string; token?: string });
  readonly url: string;
  call(scope: string, group: string, request: unknown, options?: CallOptions): Promise<Value>;
  callPid(pid: Pid, request: unknown, options?: CallOptions): Promise<Value>;
  cast(scope: string, group: string, request: unknown, options?: { signal?: AbortSignal }): Promise<Pid>;
  castPid(pid: Pid, request: unknown, options?: { signal?: AbortSignal }): Promise<void>;
  send(pid: Pid, message: unknown, options?: { signal?: AbortSignal }): Promise<void>;
  members(scope: string, group: string, options?: { signal?: AbortSignal }): Promise<Members>;
  serveMember(scope: string, group: string, handler: Handler, options?: MemberOptions): Promise<Member>;
}

export function serveMember(
  client: Client, scope: string, group: string, handler: Handler, options?: MemberOptions,
): Promise<Member>;
