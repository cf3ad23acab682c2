import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { createServer } from 'node:net';
import { Client, DEFAULT_TIMEOUT_MS, GatewayError, Kind, Pid } from '../src/index.js';
import { fakeGateway } from './fake.js';

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {string} body
 */
function answer(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(body);
}

test('a call sends the request, token and options and reads the reply', async (t) => {
  const gw = await fakeGateway((req, res, body) => answer(res, 200, `{"got": ${body}}`));
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 'sekrit' });
  const reply = await client.call('', 'echo', { n: 1 }, { strategy: 'hash', key: 'k1', idempotent: true });
  assert.deepEqual(reply, { got: { n: 1 } });
  const r = gw.seen[0];
  assert.equal(r.url, '/v1/call/default/echo');
  assert.equal(r.headers.authorization, 'Bearer sekrit');
  assert.equal(r.headers['shoal-strategy'], 'hash');
  assert.equal(r.headers['shoal-key'], 'k1');
  assert.equal(r.headers['shoal-idempotent'], 'true');
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(Number(r.headers['shoal-timeout']), DEFAULT_TIMEOUT_MS / 1000, 'the default timeout is sent');
  await client.call('s', 'g', null, { timeoutMs: 250 });
  assert.equal(gw.seen[1].headers['shoal-timeout'], '0.250');
  await client.call('s', 'g', null, { timeoutMs: 0.01 });
  assert.equal(gw.seen[2].headers['shoal-timeout'], '0.001', 'the least timeout the gateway takes');
  const long = new AbortController();
  await client.call('s', 'g', null, { signal: long.signal });
  assert.equal(getEventListeners(long.signal, 'abort').length, 0, 'a long-lived signal keeps no listener per call');
  await client.callPid(new Pid('n.1', 2, 3), null);
  assert.equal(gw.seen[4].url, '/v1/call/pid/%3Cn.1.2.3%3E');
});

test('an error answer is a GatewayError with its kind and retry rule', async (t) => {
  const gw = await fakeGateway((req, res) => answer(res, 502,
    '{"error": {"kind": "crash", "message": "boom", "retry_safe": false, "remote_type": "ValueError", "member": {"$pid": ["n", 1, 2]}}}'));
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 't' });
  await assert.rejects(client.call('', 'crash', 'x'), (err) => {
    assert.ok(err instanceof GatewayError);
    assert.equal(err.kind, Kind.CRASH);
    assert.equal(err.status, 502);
    assert.equal(err.retrySafe, false);
    assert.equal(err.remoteType, 'ValueError');
    assert.deepEqual(err.member, new Pid('n', 1, 2));
    assert.equal(err.detail, 'boom');
    return true;
  });
});

test('an answer without an error body is a bad response', async (t) => {
  const gw = await fakeGateway((req, res) => answer(res, 502, '<html>proxy error</html>'));
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 't' });
  await assert.rejects(client.call('', 'g', null), { kind: Kind.BAD_RESPONSE, status: 502, retrySafe: false });
});

test('a gateway that cannot be reached is retry-safe', async () => {
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (probe.address());
  await new Promise((resolve) => probe.close(() => resolve(undefined))); // now refused
  const client = new Client({ url: `http://127.0.0.1:${port}`, token: 't' });
  await assert.rejects(client.call('', 'g', null), { kind: Kind.CONNECTION, retrySafe: true });
});

test('a wait that passes in the client is a timeout; an aborted signal is a cancel', async (t) => {
  const gw = await fakeGateway(() => { /* never answers */ });
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 't' });
  await assert.rejects(client.call('', 'g', null, { signal: AbortSignal.timeout(100) }), { kind: Kind.TIMEOUT, retrySafe: false });
  const ctl = new AbortController();
  const pending = client.call('', 'g', null, { signal: ctl.signal });
  ctl.abort();
  await assert.rejects(pending, { kind: Kind.CANCELED, retrySafe: false });
  await assert.rejects(client.call('', 'g', null, { signal: ctl.signal }), { kind: Kind.CANCELED, retrySafe: true });
});

test('a value without JSON form is refused before sending', async (t) => {
  const gw = await fakeGateway((req, res) => answer(res, 200, 'null'));
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 't' });
  await assert.rejects(client.call('', 'g', [NaN]), { kind: Kind.BAD_REQUEST, retrySafe: true });
  assert.equal(gw.seen.length, 0);
});

test('cast, send and members', async (t) => {
  const gw = await fakeGateway((req, res) => {
    if (req.url === '/v1/cast/default/g') answer(res, 202, '{"member": {"$pid": ["n", 1, 5]}}');
    else if (req.url === '/v1/members/s/g') {
      answer(res, 200, '{"scope": "s", "group": "g", "members": [{"$pid": ["n", 1, 5]}, {"$pid": ["m", 2, 6]}], "routable": [{"$pid": ["n", 1, 5]}]}');
    } else answer(res, 202, '{}');
  });
  t.after(gw.close);
  const client = new Client({ url: gw.url, token: 't' });
  assert.deepEqual(await client.cast('', 'g', 'hi'), new Pid('n', 1, 5));
  await client.send(new Pid('n', 1, 5), 'info');
  assert.equal(gw.seen[1].url, '/v1/send/pid/%3Cn.1.5%3E');
  assert.equal(gw.seen[1].body, '"info"');
  await client.castPid(new Pid('n', 1, 5), 'c');
  assert.equal(gw.seen[2].url, '/v1/cast/pid/%3Cn.1.5%3E');
  assert.deepEqual(await client.members('s', 'g'), {
    scope: 's', group: 'g', members: [new Pid('n', 1, 5), new Pid('m', 2, 6)], routable: [new Pid('n', 1, 5)],
  });
});

test('the URL and token come from the environment when not given', (t) => {
  const saved = { url: process.env.SHOAL_GATEWAY_URL, token: process.env.SHOAL_GATEWAY_TOKEN };
  t.after(() => {
    for (const [k, v] of [['SHOAL_GATEWAY_URL', saved.url], ['SHOAL_GATEWAY_TOKEN', saved.token]]) {
      if (v === undefined) delete process.env[/** @type {string} */ (k)];
      else process.env[/** @type {string} */ (k)] = v;
    }
  });
  process.env.SHOAL_GATEWAY_URL = 'http://127.0.0.1:1/';
  process.env.SHOAL_GATEWAY_TOKEN = 'from-env';
  assert.equal(new Client().url, 'http://127.0.0.1:1');
  delete process.env.SHOAL_GATEWAY_TOKEN;
  assert.throws(() => new Client(), /no token/);
  assert.throws(() => new Client({ url: 'ftp://x', token: 't' }), /not http/);
});
