import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadValueError, Crash, MAX_DEPTH, Pid, parse, stringify } from '../src/index.js';

test('typed values write their typed forms', () => {
  const cases = [
    [new Pid('api-1', 7, 42), '{"$pid":["api-1",7,42]}'],
    [new Uint8Array([0, 255]), '{"$bin":"00ff"}'],
    [Buffer.from('hi'), '{"$bin":"6869"}'],
    [new Crash('ValueError', 'boom', 'tb'), '{"$crash":["ValueError","boom","tb"]}'],
    [new Map([[new Uint8Array([1]), 'one'], ['s', 2]]), '{"$kv":[[{"$bin":"01"},"one"],["s",2]]}'],
    [new Map([['a', 1]]), '{"a":1}'],
    [{ $x: 1, y: null }, '{"$map":{"$x":1,"y":null}}'],
    [[1, -1.5, 's<&>', true, null, undefined], '[1,-1.5,"s<&>",true,null,null]'],
    [2n ** 64n, '18446744073709551616'],
    [{ when: new Date(0) }, '{"when":"1970-01-01T00:00:00.000Z"}'],
  ];
  for (const [value, want] of cases) assert.equal(stringify(value), want);
});

test('typed forms read as typed values', () => {
  assert.deepEqual(parse('{"$pid":["api-1",7,42]}'), new Pid('api-1', 7, 42));
  assert.deepEqual(parse('{"$bin":"00ff"}'), new Uint8Array([0, 255]));
  assert.deepEqual(parse('{"$crash":["E","m","t"]}'), new Crash('E', 'm', 't'));
  assert.deepEqual(parse('{"$map":{"$x":1,"key":{"$bin":"00"}}}'), { $x: 1, key: new Uint8Array([0]) });
  assert.deepEqual(parse('{"$kv":[[{"$bin":"01"},"one"],["s",null]]}'), new Map([[new Uint8Array([1]), 'one'], ['s', null]]));
  assert.deepEqual(parse('{"a":{"b":[{"$pid":["n",0,0]}]}}'), { a: { b: [new Pid('n', 0, 0)] } });
  const proto = /** @type {any} */ (parse('{"__proto__": {"x": 1}}'));
  assert.deepEqual(Object.keys(proto), ['__proto__']);
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
});

test('bad typed forms are rejected', () => {
  for (const bad of [
    '{"$nope": 1}', '{"$pid": ["n", 1]}', '{"$pid": ["", 1, 2]}', '{"$pid": ["n", -1, 2]}',
    '{"$pid": ["n", 1.5, 2]}', '{"$bin": "0g"}', '{"$bin": "0"}', '{"$bin": 12}', '{"$crash": ["a", "b"]}',
    '{"$map": []}', '{"$kv": [[1]]}', '{"$pid": ["n", 1, 2], "other": 1}', '{"a": 1, "$b": 2}',
    '[1, {"$nope": 2}]', '{not json', '1 2', '{"$kv": [[1, "one"]]}', `{"$pid": ["${'n'.repeat(256)}", 1, 2]}`,
    '['.repeat(MAX_DEPTH + 2) + ']'.repeat(MAX_DEPTH + 2),
  ]) {
    assert.throws(() => parse(bad), BadValueError, bad);
  }
  for (const bad of [NaN, Infinity, [() => 1], Symbol('s'), new Map([[1, 'one']])]) {
    assert.throws(() => stringify(bad), BadValueError);
  }
  const cyclic = /** @type {any[]} */ ([]);
  cyclic.push(cyclic);
  assert.throws(() => stringify(cyclic), BadValueError);
});

test('values survive a round trip', () => {
  const value = [
    null, true, 'x', -3, 2.5, new Pid('node.with.dots', 3, 9), new Uint8Array([1, 2]),
    new Crash('E', 'm', 't'), { $dollar: new Map([[new Uint8Array([1]), []]]), plain: {} },
  ];
  assert.deepEqual(parse(stringify(value)), value);
});

test('pids parse as printed', () => {
  const p = new Pid('api.eu-1', 17, 4);
  for (const text of [String(p), 'api.eu-1.17.4', ' <api.eu-1.17.4> ']) assert.deepEqual(Pid.parse(text), p);
  for (const bad of ['', '<a.1>', 'a.1.x', '<.1.2>', 'a.-1.2', '<a.1.2']) assert.throws(() => Pid.parse(bad), BadValueError, bad);
  assert.ok(p.equals(new Pid('api.eu-1', 17, 4)));
  assert.ok(!p.equals(new Pid('api.eu-1', 17, 5)));
});
