// The program the repository's pytest suite (tests/clients/test_node.py)
// drives against a real shoal cluster. It reads SHOAL_GATEWAY_URL and
// SHOAL_GATEWAY_TOKEN and writes one line per result:
//
//   node driver.js call SCOPE GROUP JSON  "reply JSON", or "error KIND RETRY_SAFE REMOTE_TYPE|null STATUS"
//   node driver.js member SCOPE GROUP N   "registered ID PID"; "call JSON" per call, each
//                                         answered ["node", request] (after {"sleep": seconds}
//                                         if the request has it); on SIGTERM it closes
//                                         (draining) and writes "drained N"
//   node driver.js mapping                per JSON document on stdin: "refused", or
//                                         "ok<TAB>the value with its types<TAB>the value written back"
//   node driver.js tour                   members, callPid, cast, castPid, send and four errors on
//                                         the cluster's "echo" and "slow" groups, one line each
//   node driver.js errors                 per "STATUS<TAB>BODY" on stdin, the error a call gets when
//                                         the gateway answers that: "KIND RETRY_SAFE REMOTE_TYPE STATUS MEMBER"
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Buffer } from 'node:buffer';
import { BadValueError, Client, Crash, GatewayError, Pid, parse, stringify } from '../src/index.js';

/** @param {string} line */
function say(line) {
  process.stdout.write(`${line}\n`);
}

/** @param {unknown} err */
function sayError(err) {
  if (!(err instanceof GatewayError)) {
    say(`error not-a-gateway-error ${err}`);
    return;
  }
  say(`error ${err.kind} ${err.retrySafe} ${err.remoteType ?? 'null'} ${err.status}`);
}

/**
 * A value with its type made explicit (tests/clients/client_support.py's tag).
 * @param {unknown} v
 * @returns {unknown}
 */
function tagged(v) {
  if (v === null) return ['null'];
  if (typeof v === 'boolean') return ['bool', v];
  if (typeof v === 'number') return [Number.isInteger(v) ? 'int' : 'float', v];
  if (typeof v === 'string') return ['str', v];
  if (v instanceof Uint8Array) return ['bin', Buffer.from(v).toString('hex')];
  if (v instanceof Pid) return ['pid', v.node, v.creation, v.serial];
  if (v instanceof Crash) return ['crash', v.type, v.message, v.traceback];
  if (Array.isArray(v)) return ['list', v.map(tagged)];
  if (v instanceof Map) return ['map', [...v].map(([k, item]) => [tagged(k), tagged(item)])];
  if (typeof v === 'object') return ['map', Object.entries(v).map(([k, item]) => [tagged(k), tagged(item)])];
  return ['unknown', typeof v];
}

async function mapping() {
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    let value;
    try {
      value = parse(line);
    } catch (err) {
      if (!(err instanceof BadValueError)) throw err;
      say('refused');
      continue;
    }
    say(`ok\t${JSON.stringify(tagged(value))}\t${stringify(value)}`);
  }
}

// Calls a local server that answers each call with one of the given
// answers, and says what error the client makes of it.
async function errorAnswers() {
  /** @type {[number, string][]} */
  const answers = [];
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    const tab = line.indexOf('\t');
    answers.push([Number(line.slice(0, tab)), line.slice(tab + 1)]);
  }
  const server = createServer((req, res) => {
    const [status, body] = answers[Number(String(req.url).split('/').pop())];
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  const client = new Client({ url: `http://127.0.0.1:${port}`, token: 't' });
  for (let i = 0; i < answers.length; i += 1) {
    try {
      await client.call('default', String(i), null);
      say('no error');
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      say(`${err.kind} ${err.retrySafe} ${err.remoteType ?? 'null'} ${err.status} ${err.member ?? 'null'}`);
    }
  }
  server.closeAllConnections();
  server.close();
}

async function tour() {
  const client = new Client();
  const m = await client.members('default', 'echo');
  say(`members ${m.members.length} ${m.routable.length}`);
  const first = m.members[0];
  say(`callPid ${stringify(await client.callPid(first, 'hi'))} ok`);
  const to = await client.cast('default', 'echo', 'c');
  say(`cast ${m.members.some((pid) => pid.equals(to))} ok`);
  await client.castPid(first, 'c');
  say('castPid ok');
  await client.send(first, 'i');
  say('send ok');
  /** @type {[string, () => Promise<unknown>][]} */
  const failures = [
    ['dead', () => client.callPid(new Pid(first.node, first.creation, 999999), 'x')],
    ['empty', () => client.call('default', 'nobody', 1)],
    ['slow', () => client.call('default', 'slow', 2.0, { timeoutMs: 500 })],
    ['tiny', () => client.call('default', 'slow', 2.0, { timeoutMs: 0.000001 })],
    // The signal alone bounds the wait (the gateway is told only timeoutMs).
    ['deadline', () => client.call('default', 'slow', 2.0, { signal: AbortSignal.timeout(500) })],
  ];
  for (const [name, call] of failures) {
    try {
      await call();
      say(`${name} no error`);
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      say(name === 'deadline' ? `${name} ${err.kind} ${err.retrySafe}` : `${name} ${err.kind} ${err.retrySafe} ${err.status}`);
    }
  }
}

const [cmd, scope, group, arg] = process.argv.slice(2);
if (cmd === 'mapping') {
  await mapping();
} else if (cmd === 'errors') {
  await errorAnswers();
} else if (cmd === 'tour') {
  await tour();
} else if (cmd === 'call') {
  const client = new Client();
  try {
    say(`reply ${stringify(await client.call(scope, group, parse(arg)))}`);
  } catch (err) {
    sayError(err);
  }
} else if (cmd === 'member') {
  const client = new Client();
  let member;
  try {
    member = await client.serveMember(scope, group, async (req) => {
      say(`${req.kind} ${stringify(req.body)}`);
      const seconds = /** @type {any} */ (req.body)?.sleep;
      if (typeof seconds === 'number') await sleep(seconds * 1000, undefined, { signal: req.signal });
      return ['node', req.body];
    }, { concurrency: Number(arg) });
  } catch (err) {
    sayError(err);
    process.exit(1);
  }
  say(`registered ${member.id} ${member.pid}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      say(`drained ${await member.close()}`);
    } catch (err) {
      sayError(err);
      process.exitCode = 1;
    }
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await member.closed;
  if (!stopping) {
    sayError(member.error);
    process.exit(1);
  }
} else {
  process.stderr.write('usage: driver.js mapping | errors | tour | call SCOPE GROUP JSON | member SCOPE GROUP CONCURRENCY\n');
  process.exit(2);
}
