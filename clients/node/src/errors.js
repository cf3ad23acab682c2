// Errors: every failure of a Client method is a GatewayError with the shoal
// error kind of docs/gateway.md section 4 and `retrySafe`.

import { Pid } from './jsonmap.js';

/**
 * The error kinds: the gateway's (section 4) and the client's own
 * (CONNECTION, CANCELED, BAD_RESPONSE) for failures with no answer from it.
 */
export const Kind = Object.freeze({
  BAD_REQUEST: 'bad_request', // 400: malformed body, bad typed value, bad option or pid
  UNAUTHORIZED: 'unauthorized', // 401: missing or wrong token
  FORBIDDEN: 'forbidden', // 403: a non-loopback client without --gateway-remote
  NO_MEMBERS: 'no_members', // 404: the group has no live member
  NOPROC: 'noproc', // 404: the pid is not alive
  NOT_FOUND: 'not_found', // 404: no such path or registration
  METHOD_NOT_ALLOWED: 'method_not_allowed', // 405
  TOO_LARGE: 'too_large', // 413: the body is over the gateway's limit
  UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type', // 415
  REJECTED: 'rejected', // 422: the handler rejected the request
  CRASH: 'crash', // 502: the handler raised; see remoteType
  EXITED: 'exited', // 502: the process exited during the call
  UNENCODABLE: 'unencodable', // 502: the reply has no form in the accepted type
  INTERNAL: 'internal', // 500: the gateway failed handling the request
  OVERLOADED: 'overloaded', // 503: the member's mailbox is full
  NODEDOWN: 'nodedown', // 503: the member's node is down or unreachable
  UNAVAILABLE: 'unavailable', // 503: the gateway's node is starting, draining or without its store
  TIMEOUT: 'timeout', // 504, or the client's own wait passed
  CONNECTION: 'connection', // no connection (retrySafe), or it broke after sending (not)
  CANCELED: 'canceled', // the caller's signal aborted; the request may have started
  BAD_RESPONSE: 'bad_response', // the gateway's answer could not be read
});

/** Every error a Client method throws (besides programming errors). */
export class GatewayError extends Error {
  /**
   * @param {object} fields
   * @param {string} fields.kind one of Kind
   * @param {string} [fields.message]
   * @param {number} [fields.status] the HTTP status; 0 when no answer came
   * @param {boolean} [fields.retrySafe] true only when the request provably did not start
   * @param {string | null} [fields.remoteType] a crash's exception class
   * @param {Pid | null} [fields.member] the pid that failed
   * @param {unknown} [fields.cause]
   */
  constructor({ kind, message = '', status = 0, retrySafe = false, remoteType = null, member = null, cause }) {
    super(`shoal gateway: ${kind}${status ? ` (${status})` : ''}${remoteType ? ` ${remoteType}` : ''}${message ? `: ${message}` : ''}`,
      cause === undefined ? undefined : { cause });
    this.name = 'GatewayError';
    this.kind = kind;
    this.status = status;
    this.retrySafe = retrySafe;
    this.remoteType = remoteType;
    this.member = member;
    this.detail = message;
  }
}

/**
 * What a member handler throws to reject a request: the caller gets
 * Kind.REJECTED with this message.
 */
export class Rejection extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'Rejection';
  }
}

/**
 * The GatewayError of an error answer, from its {"error": {...}} body.
 * @param {number} status
 * @param {string} text
 * @returns {GatewayError}
 */
export function answerError(status, text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  const e = body && typeof body === 'object' ? body.error : null;
  if (!e || typeof e !== 'object' || typeof e.kind !== 'string') {
    const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
    return new GatewayError({ kind: Kind.BAD_RESPONSE, status, message: `HTTP ${status} without an error body: ${shown}` });
  }
  let member = null;
  if (e.member && Array.isArray(e.member.$pid)) {
    try {
      member = new Pid(e.member.$pid[0], e.member.$pid[1], e.member.$pid[2]);
    } catch {
      member = null;
    }
  }
  return new GatewayError({
    kind: e.kind, status, message: String(e.message ?? ''), retrySafe: e.retry_safe === true,
    remoteType: typeof e.remote_type === 'string' ? e.remote_type : null, member,
  });
}
