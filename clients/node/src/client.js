// The caller side of the gateway (docs/gateway.md section 3), over fetch.
//
// Timeouts: a call waits `timeoutMs` (default DEFAULT_TIMEOUT_MS, 5 s) and
// sends it to the gateway as the call's timeout, which the gateway enforces
// across all its attempts; the client itself waits REPLY_GRACE_MS longer so
// the gateway's own 504 arrives first. A `signal` aborts the wait early.

import { BadValueError, Pid, parse, stringify } from './jsonmap.js';
import { GatewayError, Kind, answerError } from './errors.js';
import { serveMember } from './member.js';

/** How long a call waits unless told otherwise: 5 s, the gateway's default too. */
export const DEFAULT_TIMEOUT_MS = 5000;
/** The longest timeout the gateway accepts; longer ones are sent as this. */
export const MAX_TIMEOUT_MS = 300_000;
const REPLY_GRACE_MS = 1000;

/**
 * @typedef {object} CallOptions
 * @property {number} [timeoutMs] for all attempts together (default 5000)
 * @property {AbortSignal} [signal] aborts the call (the caller then gets Kind.CANCELED or Kind.TIMEOUT)
 * @property {'local_first'|'random'|'round_robin'|'least_loaded'|'hash'} [strategy] default local_first
 * @property {string} [key] the key of the hash strategy
 * @property {boolean} [idempotent] let the gateway retry also when delivery is unknown
 */

export class Client {
  /**
   * @param {object} [options]
   * @param {string} [options.url] the gateway's base URL; default SHOAL_GATEWAY_URL
   * @param {string} [options.token] the bearer token; default SHOAL_GATEWAY_TOKEN
   */
  constructor({ url, token } = {}) {
    url = url || process.env.SHOAL_GATEWAY_URL || '';
    token = token || process.env.SHOAL_GATEWAY_TOKEN || '';
    if (!url) throw new Error('shoal gateway: no URL: pass one or set SHOAL_GATEWAY_URL');
    if (!token) throw new Error('shoal gateway: no token: pass one or set SHOAL_GATEWAY_TOKEN');
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      parsed = null;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new Error(`shoal gateway: URL ${JSON.stringify(url)} is not http(s)://host:port`);
    }
    /** @readonly */
    this.url = url.replace(/\/+$/, '');
    /** @internal the bearer token */
    this.bearer = token;
  }

  /**
   * Sends `request` to one member of the group and returns its reply. The
   * gateway picks the member and retries on another when the failure
   * provably did not start (or, with `idempotent`, when delivery is unknown).
   * @param {string} scope '' is 'default'
   * @param {string} group
   * @param {unknown} request
   * @param {CallOptions} [options]
   * @returns {Promise<unknown>}
   */
  call(scope, group, request, options = {}) {
    return this.#call(`/v1/call/${seg(scope || 'default')}/${seg(group)}`, request, options);
  }

  /**
   * Sends `request` to one process and returns its reply (timeoutMs and signal apply).
   * @param {Pid} pid
   * @param {unknown} request
   * @param {CallOptions} [options]
   * @returns {Promise<unknown>}
   */
  callPid(pid, request, options = {}) {
    return this.#call(`/v1/call/pid/${seg(String(pid))}`, request, options);
  }

  /**
   * @param {string} path
   * @param {unknown} request
   * @param {CallOptions} options
   */
  #call(path, request, { timeoutMs = DEFAULT_TIMEOUT_MS, signal, strategy, key, idempotent } = {}) {
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be > 0, not ${timeoutMs}`);
    // The header has millisecond precision, and a timeout of 0 is refused.
    const timeout = Math.max(1, Math.min(timeoutMs, MAX_TIMEOUT_MS));
    /** @type {Record<string, string>} */
    const headers = { 'Shoal-Timeout': (timeout / 1000).toFixed(3) };
    if (strategy) headers['Shoal-Strategy'] = strategy;
    if (key !== undefined) headers['Shoal-Key'] = key;
    if (idempotent) headers['Shoal-Idempotent'] = 'true';
    return this.request('POST', path, { body: request, headers, waitMs: timeout + REPLY_GRACE_MS, signal });
  }

  /**
   * Sends `request` to one member of the group without waiting for a reply
   * (handle_cast); returns the member it went to.
   * @param {string} scope
   * @param {string} group
   * @param {unknown} request
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Pid>}
   */
  async cast(scope, group, request, { signal } = {}) {
    const answer = /** @type {any} */ (await this.request('POST', `/v1/cast/${seg(scope || 'default')}/${seg(group)}`, { body: request, signal }));
    if (!answer || !(answer.member instanceof Pid)) {
      throw new GatewayError({ kind: Kind.BAD_RESPONSE, message: `a cast answered ${stringify(answer)}, not {"member": pid}` });
    }
    return answer.member;
  }

  /**
   * Sends `request` to one process without waiting (handle_cast).
   * @param {Pid} pid
   * @param {unknown} request
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async castPid(pid, request, { signal } = {}) {
    await this.request('POST', `/v1/cast/pid/${seg(String(pid))}`, { body: request, signal });
  }

  /**
   * Sends a plain message to one process (handled by handle_info).
   * @param {Pid} pid
   * @param {unknown} message
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async send(pid, message, { signal } = {}) {
    await this.request('POST', `/v1/send/pid/${seg(String(pid))}`, { body: message, signal });
  }

  /**
   * A group's members as the gateway's node sees them.
   * @param {string} scope
   * @param {string} group
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{scope: string, group: string, members: Pid[], routable: Pid[]}>}
   */
  async members(scope, group, { signal } = {}) {
    const answer = /** @type {any} */ (await this.request('GET', `/v1/members/${seg(scope || 'default')}/${seg(group)}`, { signal }));
    if (!answer || !Array.isArray(answer.members) || !Array.isArray(answer.routable)) {
      throw new GatewayError({ kind: Kind.BAD_RESPONSE, message: `members answered ${stringify(answer)}` });
    }
    return { scope: answer.scope, group: answer.group, members: answer.members, routable: answer.routable };
  }

  /**
   * Serves `handler` as a member of the group; see serveMember in member.js.
   * @param {string} scope
   * @param {string} group
   * @param {import('./member.js').Handler} handler
   * @param {import('./member.js').MemberOptions} [options]
   */
  serveMember(scope, group, handler, options = {}) {
    return serveMember(this, scope, group, handler, options);
  }

  /**
   * Sends one request to the gateway and maps its answer: a 2xx body to its
   * value, an error answer or a failure to a GatewayError.
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, headers?: Record<string, string>, waitMs?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<unknown>}
   */
  async request(method, path, { body, headers = {}, waitMs = DEFAULT_TIMEOUT_MS + REPLY_GRACE_MS, signal } = {}) {
    /** @type {Record<string, string>} */
    const all = { ...headers, Authorization: `Bearer ${this.bearer}`, Accept: 'application/json' };
    let text;
    if (method !== 'GET' && method !== 'DELETE') {
      try {
        text = stringify(body);
      } catch (err) {
        throw new GatewayError({ kind: Kind.BAD_REQUEST, retrySafe: true, message: /** @type {Error} */ (err).message, cause: err });
      }
      all['Content-Type'] = 'application/json';
    }
    if (signal?.aborted) throw aborted(signal, true);
    const own = AbortSignal.timeout(waitMs);
    const either = eitherSignal(own, signal);
    let response;
    let answer;
    try {
      response = await fetch(this.url + path, { method, headers: all, body: text, signal: either.signal });
      answer = await response.text();
    } catch (err) {
      if (signal?.aborted) throw aborted(signal, false);
      if (own.aborted) {
        throw new GatewayError({ kind: Kind.TIMEOUT, message: `no answer from the gateway within ${waitMs} ms`, cause: err });
      }
      const code = /** @type {any} */ (err)?.cause?.code;
      const refused = response === undefined && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code);
      throw new GatewayError({
        kind: Kind.CONNECTION, retrySafe: refused, cause: err,
        message: refused ? `cannot reach the gateway: ${code}` : `the connection to the gateway broke: ${/** @type {any} */ (err)?.cause?.message ?? err}`,
      });
    } finally {
      either.release();
    }
    if (response.status < 200 || response.status >= 300) throw answerError(response.status, answer);
    if (answer.trim() === '') return null;
    try {
      return parse(answer);
    } catch (err) {
      if (!(err instanceof BadValueError)) throw err;
      throw new GatewayError({ kind: Kind.BAD_RESPONSE, status: response.status, message: err.message, cause: err });
    }
  }
}

/**
 * @param {AbortSignal} signal
 * @param {boolean} notSent
 */
function aborted(signal, notSent) {
  const timedOut = signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError';
  return new GatewayError({
    kind: timedOut ? Kind.TIMEOUT : Kind.CANCELED, retrySafe: notSent, cause: signal.reason,
    message: notSent ? 'aborted before the request was sent' : 'aborted while waiting for the gateway',
  });
}

/**
 * A signal that aborts when `own` or `other` does (AbortSignal.any, which
 * Node.js 18 lacks), and `release` to stop listening to `other`, which may
 * live much longer than one request.
 * @param {AbortSignal} own
 * @param {AbortSignal | undefined} other
 */
function eitherSignal(own, other) {
  if (!other) return { signal: own, release: () => {} };
  const both = new AbortController();
  const fromOwn = () => both.abort(own.reason);
  const fromOther = () => both.abort(other.reason);
  own.addEventListener('abort', fromOwn, { once: true });
  other.addEventListener('abort', fromOther, { once: true });
  return {
    signal: both.signal,
    release: () => {
      own.removeEventListener('abort', fromOwn);
      other.removeEventListener('abort', fromOther);
    },
  };
}

/** @param {string} s */
function seg(s) {
  return encodeURIComponent(s);
}
