// The conformance vectors of the gateway (docs/gateway.md sections 2 and 4),
// shared by every client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BadValueError, Kind, PROTOCOL_VERSION, Pid, parse, stringify } from '../src/index.js';
import { answerError } from '../src/errors.js';

const vectors = JSON.parse(readFileSync(new URL('../../../tests/pure/vectors/gateway_vectors.json', import.meta.url), 'utf8'));

test('the vectors are of this protocol version', () => {
  assert.equal(vectors.version, PROTOCOL_VERSION);
  assert.ok(vectors.mapping.length > 0 && vectors.invalid_json.length > 0 && vectors.errors.length > 0);
});

test('every mapping vector reads and writes back the same form', () => {
  for (const vec of vectors.mapping) {
    const text = JSON.stringify(vec.json);
    const value = parse(text);
    const back = stringify(value);
    assert.deepEqual(JSON.parse(back), vec.json, `${vec.name}: ${text} written back as ${back}`);
    assert.deepEqual(parse(back), value, vec.name);
  }
});

test('every invalid body of the vectors is refused', () => {
  for (const vec of vectors.invalid_json) assert.throws(() => parse(vec.body), BadValueError, vec.name);
});

test('every error of the vectors becomes a GatewayError with its kind, status and retry rule', () => {
  const known = new Set(Object.values(Kind));
  for (const vec of vectors.errors) {
    assert.ok(known.has(vec.kind), `kind ${vec.kind} has no Kind constant`);
    const example = vec.example.error;
    const err = answerError(vec.status, JSON.stringify(vec.example));
    assert.equal(err.kind, vec.kind);
    assert.equal(err.status, vec.status);
    assert.equal(err.retrySafe, example.retry_safe, vec.kind);
    if (vec.retry_safe !== null) assert.equal(err.retrySafe, vec.retry_safe, vec.kind);
    assert.equal(err.remoteType, example.remote_type ?? null);
    assert.deepEqual(err.member, example.member ? new Pid(...example.member.$pid) : null);
    assert.equal(err.detail, example.message);
  }
});
