import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, GatewayError, Kind, Pid, Rejection, parse } from '../src/index.js';
import { fakeGateway } from './fake.js';

/**
 * A fake gateway that accepts registrations with a stream, kept open until
 * the client closes it or the test calls endStream().
 */
async function fakeRegistrar() {
  /** @type {import('node:http').ServerResponse[]} */
  const streams = [];
  /** @type {() => void} */
  let markClosed = () => {};
  const streamClosed = new Promise((resolve) => { markClosed = () => resolve(undefined); });
  const deleted = [];
  const gw = await fakeGateway((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/members') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write(': hello\n\nevent: registered\ndata: {"id": "r1", "pid": {"$pid": ["gw", 1, 9]}}\n\n');
      streams.push(res);
      res.on('close', markClosed);
    } else if (req.method === 'DELETE') {
      deleted.push(req.url);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"drained": 2}');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const registration = () => JSON.parse(gw.seen.find((r) => r.url === '/v1/members')?.body ?? 'null');
  return { gw, streams, streamClosed, deleted, registration, endStream: () => streams.forEach((s) => s.end()) };
}

/**
 * @param {any} reg
 * @param {string} token
 * @param {string} kind
 * @param {string} body
 * @param {string} [deadlineMs]
 */
async function postCallback(reg, token, kind, body, deadlineMs) {
  /** @type {Record<string, string>} */
  const headers = {
    Authorization: `Bearer ${token}`, 'Shoal-Kind': kind, 'Shoal-Member': '<gw.1.9>',
    'Shoal-Caller': '<py.3.4>', 'Shoal-Registration': 'r1',
  };
  if (deadlineMs) headers['Shoal-Deadline-Ms'] = deadlineMs;
  const res = await fetch(reg.callback_url, { method: 'POST', headers, body });
  return { status: res.status, body: parse(await res.text()) };
}

test('a member serves calls and drains on close', async (t) => {
  const f = await fakeRegistrar();
  t.after(f.gw.close);
  const client = new Client({ url: f.gw.url, token: 'sekrit' });
  /** @type {import('../index.js').Request[]} */
  const seen = [];
  const member = await client.serveMember('', 'prices', async (req) => {
    seen.push(req);
    if (req.body === 'reject') throw new Rejection('no thanks');
    if (req.body === 'fail') throw new RangeError('boom');
    if (req.body === 'deadline') return req.deadline !== null && req.deadline.getTime() - Date.now() <= 3000 && !req.signal.aborted;
    return { echo: req.body };
  }, { concurrency: 4 });
  const reg = f.registration();
  assert.equal(member.id, 'r1');
  assert.deepEqual(member.pid, new Pid('gw', 1, 9));
  assert.deepEqual([reg.scope, reg.group, reg.concurrency], ['default', 'prices', 4]);
  assert.match(reg.callback_url, /^http:\/\/127\.0\.0\.1:\d+\/shoal$/);
  assert.ok(reg.callback_token.length >= 32);
  const tok = reg.callback_token;

  assert.deepEqual(await postCallback(reg, tok, 'call', '{"$bin": "00"}', '2000'), { status: 200, body: { echo: new Uint8Array([0]) } });
  const first = seen[0];
  assert.equal(first.kind, 'call');
  assert.deepEqual([first.caller, first.member, first.registration], [new Pid('py', 3, 4), new Pid('gw', 1, 9), 'r1']);
  assert.deepEqual(await postCallback(reg, tok, 'call', '"deadline"', '3000'), { status: 200, body: true });
  assert.deepEqual(await postCallback(reg, tok, 'call', '"reject"'), { status: 422, body: { error: { message: 'no thanks' } } });
  assert.deepEqual(await postCallback(reg, tok, 'call', '"fail"'), { status: 500, body: { error: { type: 'RangeError', message: 'boom' } } });
  assert.deepEqual(await postCallback(reg, tok, 'cast', '"c"'), { status: 200, body: null });
  assert.equal(seen.at(-1)?.kind, 'cast');
  const before = seen.length;
  assert.equal((await postCallback(reg, 'not-the-token', 'call', '1')).status, 401);
  assert.equal(seen.length, before, 'a callback without the registration token reaches no handler');

  assert.equal(await member.close(), 2);
  assert.deepEqual(f.deleted, ['/v1/members/r1']);
  await member.closed;
  assert.equal(member.error, null);
  await f.streamClosed; // the registration stream is closed
  await assert.rejects(fetch(reg.callback_url, { method: 'POST', body: '1' }), 'the callback server is closed');
});

test('a member whose stream ends stops and says why', async (t) => {
  const f = await fakeRegistrar();
  t.after(f.gw.close);
  const client = new Client({ url: f.gw.url, token: 't' });
  const member = await client.serveMember('s', 'g', () => null);
  assert.equal(f.registration().concurrency, undefined, 'the concurrency is left to the gateway');
  f.endStream();
  await member.closed;
  assert.ok(member.error instanceof GatewayError);
  assert.equal(member.error.kind, Kind.CONNECTION);
});

test('a member stops when its signal aborts', async (t) => {
  const f = await fakeRegistrar();
  t.after(f.gw.close);
  const client = new Client({ url: f.gw.url, token: 't' });
  const ctl = new AbortController();
  const member = await client.serveMember('s', 'g', () => null, { signal: ctl.signal, concurrency: 1 });
  ctl.abort();
  await member.closed;
  assert.deepEqual(f.deleted, ['/v1/members/r1']);
});

test('a refused registration is an error', async (t) => {
  const gw = await fakeGateway((req, res) => {
    res.writeHead(400, { 'Content-Type': 'application/json' });
    res.end('{"error": {"kind": "bad_request", "message": "concurrency: 1 to 1000", "retry_safe": true}}');
  });
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 't' });
  await assert.rejects(client.serveMember('s', 'g', () => null, { concurrency: 5000 }),
    { kind: Kind.BAD_REQUEST, status: 400, retrySafe: true, detail: 'concurrency: 1 to 1000' });
});

test('the options name the proxy and the callback URL', async (t) => {
  const f = await fakeRegistrar();
  t.after(f.gw.close);
  const client = new Client({ url: f.gw.url, token: 't' });
  const member = await client.serveMember('s', 'g', () => null,
    { concurrency: 2, name: 'prices-1', callbackUrl: 'http://10.0.0.5:9000/cb' });
  const reg = f.registration();
  assert.deepEqual([reg.name, reg.callback_url], ['prices-1', 'http://10.0.0.5:9000/cb']);
  assert.equal(await member.close(), 2);
});
