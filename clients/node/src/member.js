// A member registration (docs/gateway.md section 5): serveMember runs a
// node:http callback server, registers its URL with the gateway and keeps
// the registration's event stream open. The gateway's proxy process is in
// the group while the stream is open; if this process dies, the stream
// closes and the proxy leaves the group. close() (or aborting the signal
// given to serveMember) deletes the registration, which drains the calls in
// flight, then closes the stream and the callback server.

import { createServer } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { BadValueError, Pid, parse, stringify } from './jsonmap.js';
import { GatewayError, Kind, Rejection, answerError } from './errors.js';

const MAX_CALLBACK_BYTES = 64 << 20;
const REGISTER_WAIT_MS = 5000;
const MAX_DRAIN_MS = 301_000;

/**
 * @typedef {object} Request
 * @property {'call'|'cast'|'info'} kind
 * @property {unknown} body the request, in the JSON mapping
 * @property {Date | null} deadline when the caller gives up (calls only)
 * @property {Pid | null} caller the caller's pid, when it has one
 * @property {Pid | null} member the gateway's proxy process for this member
 * @property {string} registration the registration's id
 * @property {AbortSignal} signal aborts at the deadline, or when the gateway gives up on the callback
 */

/**
 * Returns the reply to a call (ignored for casts and infos). Throwing a
 * Rejection makes the caller get Kind.REJECTED; throwing anything else makes
 * it get Kind.CRASH with the error's name as its remoteType.
 * @typedef {(request: Request) => unknown | Promise<unknown>} Handler
 */

/**
 * @typedef {object} MemberOptions
 * @property {number} [concurrency] calls at a time, 1 to 1000 (default: the gateway's, 8)
 * @property {string} [name] register the proxy process under this local name
 * @property {string} [host] the callback server's address (default 127.0.0.1)
 * @property {number} [port] its port (default 0: a free one)
 * @property {string} [callbackUrl] the URL the gateway calls back, when it reaches the
 *   server by another address (default http://HOST:PORT/shoal; any path is served)
 * @property {AbortSignal} [signal] aborting it closes the member gracefully
 */

export class Member {
  /** @type {string} */ id = '';
  /** @type {Pid | null} */ pid = null;
  /** Why the member stopped on its own (the gateway ended the registration); null after close(). */
  /** @type {GatewayError | null} */ error = null;
  /** Resolves when the member has stopped. */
  /** @type {Promise<void>} */ closed;

  /** @type {(() => void) | undefined} */ #resolveClosed;
  #closing = false;
  #finished = false;
  /** @type {Promise<number> | null} */ #closeResult = null;

  /**
   * @param {import('./client.js').Client} client
   * @param {import('node:http').Server} server
   * @param {AbortController} stream
   */
  constructor(client, server, stream) {
    this.client = client;
    this.server = server;
    this.stream = stream;
    this.closed = new Promise((resolve) => { this.#resolveClosed = resolve; });
  }

  /**
   * Stops the member gracefully: deletes the registration (the proxy leaves
   * the group and lets its calls in flight finish, up to their deadlines),
   * then closes the stream and the callback server.
   * @returns {Promise<number>} how many calls were drained
   */
  close() {
    if (this.#closeResult) return this.#closeResult;
    this.#closing = true;
    this.#closeResult = (async () => {
      let drained = 0;
      try {
        const answer = /** @type {any} */ (await this.client.request('DELETE', `/v1/members/${encodeURIComponent(this.id)}`, { waitMs: MAX_DRAIN_MS }));
        if (answer && typeof answer.drained === 'number') drained = answer.drained;
      } catch (err) {
        // A registration that had already ended has nothing left to drain.
        if (!(err instanceof GatewayError && err.kind === Kind.NOT_FOUND)) {
          await this.finish();
          throw err;
        }
      }
      await this.finish();
      return drained;
    })();
    return this.#closeResult;
  }

  /** @internal The stream ended: stop unless close() is under way (it finishes after the drain). */
  streamEnded() {
    if (this.#closing) return;
    this.error = new GatewayError({ kind: Kind.CONNECTION, message: "the registration stream closed: the gateway's proxy has left the group" });
    void this.finish();
  }

  /** @internal */
  async finish() {
    if (this.#finished) return this.closed;
    this.#finished = true;
    this.stream.abort();
    await new Promise((resolve) => {
      this.server.close(() => resolve(undefined));
      this.server.closeIdleConnections();
    });
    this.#resolveClosed?.();
    return this.closed;
  }
}

/**
 * Serves `handler` as a member of the group: starts a callback server,
 * registers it with the gateway and resolves once the proxy process has
 * joined the group.
 * @param {import('./client.js').Client} client
 * @param {string} scope '' is 'default'
 * @param {string} group
 * @param {Handler} handler
 * @param {MemberOptions} [options]
 * @returns {Promise<Member>}
 */
export async function serveMember(client, scope, group, handler, { concurrency, name, host = '127.0.0.1', port = 0, callbackUrl, signal } = {}) {
  const secret = randomBytes(24).toString('hex');
  const expected = Buffer.from(`Bearer ${secret}`);
  const server = createServer((req, res) => { void onCallback(req, res, handler, expected); });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(undefined));
  });
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  /** @type {Record<string, unknown>} */
  const registration = {
    scope: scope || 'default', group, callback_url: callbackUrl ?? `http://${hostPart}:${address.port}/shoal`, callback_token: secret,
  };
  if (concurrency !== undefined) registration.concurrency = concurrency;
  if (name !== undefined) registration.name = name;

  const stream = new AbortController();
  const member = new Member(client, server, stream);
  try {
    const events = await openStream(client, registration, stream);
    const first = await withTimeout(nextRegistered(events), REGISTER_WAIT_MS);
    member.id = first.id;
    member.pid = first.pid;
    void (async () => {
      try {
        for await (const _ of events) { /* keep-alive comments and nothing else */ }
      } catch {
        // The stream broke: the same as its end.
      }
      member.streamEnded();
    })();
  } catch (err) {
    await member.finish();
    throw err;
  }
  if (signal) {
    if (signal.aborted) void member.close().catch(() => {});
    else signal.addEventListener('abort', () => { void member.close().catch(() => {}); }, { once: true });
  }
  return member;
}

/**
 * Posts the registration; returns its server-sent events.
 * @param {import('./client.js').Client} client
 * @param {Record<string, unknown>} registration
 * @param {AbortController} stream aborting it ends the stream
 * @returns {Promise<AsyncGenerator<{event: string, data: string}>>}
 */
async function openStream(client, registration, stream) {
  let response;
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; stream.abort(); }, REGISTER_WAIT_MS);
  try {
    response = await fetch(`${client.url}/v1/members`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${client.bearer}`,
        'Content-Type': 'application/json',
        Accept: 'text/event-stream',
      },
      body: stringify(registration),
      signal: stream.signal,
    });
  } catch (err) {
    const code = /** @type {any} */ (err)?.cause?.code;
    if (timedOut) throw new GatewayError({ kind: Kind.TIMEOUT, message: 'the gateway did not answer the registration', cause: err });
    throw new GatewayError({ kind: Kind.CONNECTION, retrySafe: code === 'ECONNREFUSED', message: `cannot register: ${code ?? err}`, cause: err });
  } finally {
    clearTimeout(timer);
  }
  if (response.status !== 200 || !response.body) {
    throw answerError(response.status, await response.text());
  }
  return readEvents(response.body);
}

/**
 * Parses a text/event-stream.
 * @param {ReadableStream<Uint8Array>} body
 */
async function* readEvents(body) {
  const decoder = new TextDecoder();
  let buffered = '';
  let event = '';
  /** @type {string[]} */
  let data = [];
  for await (const chunk of /** @type {AsyncIterable<Uint8Array>} */ (body)) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).replace(/\r$/, '');
      buffered = buffered.slice(newline + 1);
      if (line === '') {
        if (event || data.length) yield { event: event || 'message', data: data.join('\n') };
        event = '';
        data = [];
      } else if (line.startsWith(':')) {
        // a keep-alive comment
      } else if (line.startsWith('event:')) {
        event = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      if (buffered.length > 1 << 20) throw new Error('an event over 1 MiB');
    }
  }
}

/**
 * @param {AsyncGenerator<{event: string, data: string}>} events
 * @returns {Promise<{id: string, pid: Pid}>}
 */
async function nextRegistered(events) {
  for (;;) {
    const next = await events.next();
    if (next.done) throw new GatewayError({ kind: Kind.CONNECTION, message: 'the registration stream ended before the member was registered' });
    if (next.value.event !== 'registered') continue;
    let value;
    try {
      value = /** @type {any} */ (parse(next.value.data));
    } catch {
      value = null;
    }
    if (!value || typeof value.id !== 'string' || !(value.pid instanceof Pid)) {
      throw new GatewayError({ kind: Kind.BAD_RESPONSE, message: `a registered event without id and pid: ${next.value.data}` });
    }
    return { id: value.id, pid: value.pid };
  }
}

/**
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @returns {Promise<T>}
 */
function withTimeout(promise, ms) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new GatewayError({ kind: Kind.TIMEOUT, message: `not registered within ${ms} ms` })), ms);
  });
  return /** @type {Promise<T>} */ (Promise.race([promise, expired])).finally(() => clearTimeout(timer));
}

/**
 * Serves one callback request.
 * @param {import('node:http').IncomingMessage} req
 * @param {import('node:http').ServerResponse} res
 * @param {Handler} handler
 * @param {Buffer} expected the Authorization header the registration gave
 */
async function onCallback(req, res, handler, expected) {
  if (req.method !== 'POST') return reply(res, 405, { error: { message: 'POST only' } });
  const auth = Buffer.from(req.headers.authorization ?? '');
  if (auth.length !== expected.length || !timingSafeEqual(auth, expected)) {
    return reply(res, 401, { error: { message: 'unauthorized' } });
  }
  /** @type {Buffer[]} */
  const chunks = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += chunk.length;
      if (size > MAX_CALLBACK_BYTES) return reply(res, 500, crash('BadCallbackBody', 'the request body is too large'));
      chunks.push(chunk);
    }
  } catch {
    return undefined; // the gateway went away mid-request: nobody to answer
  }
  let body;
  try {
    body = parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    return reply(res, 500, crash('BadCallbackBody', /** @type {Error} */ (err).message));
  }
  const abort = new AbortController();
  const kind = /** @type {'call'|'cast'|'info'} */ (String(req.headers['shoal-kind'] ?? 'call'));
  const ms = Number.parseInt(String(req.headers['shoal-deadline-ms'] ?? ''), 10);
  const deadline = Number.isFinite(ms) ? new Date(Date.now() + ms) : null;
  const timer = deadline ? setTimeout(() => abort.abort(new DOMException('the caller gave up', 'TimeoutError')), ms) : undefined;
  res.on('close', () => {
    if (!res.writableFinished) abort.abort(new DOMException('the gateway gave up', 'AbortError'));
  });
  /** @type {Request} */
  const request = {
    kind, body, deadline,
    caller: pidHeader(req.headers['shoal-caller']),
    member: pidHeader(req.headers['shoal-member']),
    registration: String(req.headers['shoal-registration'] ?? ''),
    signal: abort.signal,
  };
  try {
    const value = await handler(request);
    let text;
    try {
      text = stringify(kind === 'call' ? value : null);
    } catch (err) {
      if (!(err instanceof BadValueError)) throw err;
      return reply(res, 500, crash('UnencodableReply', err.message));
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(text);
  } catch (err) {
    if (err instanceof Rejection) return reply(res, 422, { error: { message: err.message } });
    const type = err instanceof Error ? (err.name !== 'Error' ? err.name : err.constructor.name) : typeof err;
    const message = err instanceof Error ? err.message : String(err);
    return reply(res, 500, crash(type, message));
  } finally {
    clearTimeout(timer);
  }
  return undefined;
}

/**
 * @param {string} type
 * @param {string} message
 */
function crash(type, message) {
  return { error: { type, message } };
}

/**
 * @param {string | string[] | undefined} header
 * @returns {Pid | null}
 */
function pidHeader(header) {
  if (typeof header !== 'string' || header === '') return null;
  try {
    return Pid.parse(header);
  } catch {
    return null;
  }
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 */
function reply(res, status, body) {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(stringify(body));
}
