// The JSON mapping of docs/gateway.md section 2, both ways.
//
// `stringify` writes the JSON text itself so that a bigint is written with
// all its digits and a map key starting with "$" is always wrapped in
// {"$map": ...}. `parse` uses JSON.parse, so an integer beyond 2^53 loses
// precision (the contract says: use msgpack for those). A JavaScript number
// cannot tell 1.0 from 1: integral numbers are written as integers.

/** Thrown for a value the mapping cannot write, or JSON it cannot read. */
export class BadValueError extends TypeError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'BadValueError';
  }
}

/** The address of one shoal process. JSON: {"$pid": [node, creation, serial]}. */
export class Pid {
  /**
   * @param {string} node the node's name
   * @param {number} creation the node's incarnation
   * @param {number} serial the process's number within it
   */
  constructor(node, creation, serial) {
    if (typeof node !== 'string' || node === '' || Buffer.byteLength(node) > MAX_NODE || !isCount(creation) || !isCount(serial)) {
      throw new BadValueError(`a pid is [node, creation, serial]: a string of 1 to ${MAX_NODE} bytes and two integers >= 0, not ${JSON.stringify([node, creation, serial])}`);
    }
    this.node = node;
    this.creation = creation;
    this.serial = serial;
    Object.freeze(this);
  }

  /**
   * Reads a pid as `toString` prints it, `<node.creation.serial>` (the angle
   * brackets are optional; the node name may contain dots).
   * @param {string} text
   * @returns {Pid}
   */
  static parse(text) {
    let body = String(text).trim();
    if (body.startsWith('<') || body.endsWith('>')) {
      if (body.length < 2 || !body.startsWith('<') || !body.endsWith('>')) {
        throw new BadValueError(`pid ${JSON.stringify(text)} is not <node.creation.serial>`);
      }
      body = body.slice(1, -1);
    }
    const m = /^(.+)\.(\d+)\.(\d+)$/s.exec(body);
    if (!m) throw new BadValueError(`pid ${JSON.stringify(text)} is not <node.creation.serial>`);
    return new Pid(m[1], Number(m[2]), Number(m[3]));
  }

  toString() {
    return `<${this.node}.${this.creation}.${this.serial}>`;
  }

  /** @param {unknown} other */
  equals(other) {
    return other instanceof Pid && other.node === this.node &&
      other.creation === this.creation && other.serial === this.serial;
  }
}

/** The exit reason of a process whose handler raised. JSON: {"$crash": [type, message, traceback]}. */
export class Crash {
  /**
   * @param {string} type the exception's class name
   * @param {string} message
   * @param {string} traceback
   */
  constructor(type, message, traceback) {
    for (const part of [type, message, traceback]) {
      if (typeof part !== 'string') throw new BadValueError('a crash is [type, message, traceback], all strings');
    }
    this.type = type;
    this.message = message;
    this.traceback = traceback;
    Object.freeze(this);
  }
}

/** @param {unknown} n */
function isCount(n) {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** The deepest nesting of arrays and maps the mapping accepts, both ways (the gateway's own bound). */
export const MAX_DEPTH = 256;
const MAX_NODE = 255;

/**
 * Writes a value as JSON text in the gateway's mapping: null/undefined,
 * booleans, strings, numbers, bigints, arrays, plain objects, Map (a $kv
 * when a key is not a string), Pid, Crash and Uint8Array/Buffer (as $bin).
 * @param {unknown} value
 * @returns {string}
 */
export function stringify(value) {
  /** @type {string[]} */
  const out = [];
  write(value, out, 0);
  return out.join('');
}

/**
 * @param {unknown} v
 * @param {string[]} out
 * @param {number} depth
 */
function write(v, out, depth) {
  if (depth > MAX_DEPTH) throw new BadValueError(`nested deeper than ${MAX_DEPTH} (a cycle?)`);
  if (v === null || v === undefined) {
    out.push('null');
  } else if (typeof v === 'boolean' || typeof v === 'string') {
    out.push(JSON.stringify(v));
  } else if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new BadValueError(`${v} has no JSON form (use msgpack)`);
    out.push(JSON.stringify(v));
  } else if (typeof v === 'bigint') {
    out.push(v.toString());
  } else if (v instanceof Pid) {
    out.push(`{"$pid":[${JSON.stringify(v.node)},${v.creation},${v.serial}]}`);
  } else if (v instanceof Crash) {
    out.push(`{"$crash":[${JSON.stringify(v.type)},${JSON.stringify(v.message)},${JSON.stringify(v.traceback)}]}`);
  } else if (v instanceof Uint8Array) {
    out.push(`{"$bin":"${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}"}`);
  } else if (Array.isArray(v)) {
    out.push('[');
    v.forEach((item, i) => {
      if (i > 0) out.push(',');
      write(item, out, depth + 1);
    });
    out.push(']');
  } else if (v instanceof Map) {
    const keys = [...v.keys()];
    if (!keys.every((k) => typeof k === 'string' || k instanceof Uint8Array)) {
      throw new BadValueError('a map key is a string or bytes (Uint8Array)');
    }
    if (keys.every((k) => typeof k === 'string')) {
      writeObject(keys.map((k) => [k, v.get(k)]), out, depth);
    } else {
      out.push('{"$kv":[');
      keys.forEach((k, i) => {
        if (i > 0) out.push(',');
        out.push('[');
        write(k, out, depth + 1);
        out.push(',');
        write(v.get(k), out, depth + 1);
        out.push(']');
      });
      out.push(']}');
    }
  } else if (typeof v === 'object' && typeof (/** @type {any} */ (v).toJSON) === 'function') {
    write(/** @type {any} */ (v).toJSON(), out, depth + 1);
  } else if (typeof v === 'object') {
    writeObject(Object.entries(v), out, depth);
  } else {
    throw new BadValueError(`a ${typeof v} has no JSON form`);
  }
}

/**
 * @param {[string, unknown][]} entries
 * @param {string[]} out
 * @param {number} depth
 */
function writeObject(entries, out, depth) {
  const wrap = entries.some(([k]) => k.startsWith('$'));
  if (wrap) out.push('{"$map":');
  out.push('{');
  entries.forEach(([k, item], i) => {
    if (i > 0) out.push(',');
    out.push(JSON.stringify(k), ':');
    write(item, out, depth + 1);
  });
  out.push('}');
  if (wrap) out.push('}');
}

/**
 * Reads JSON text in the gateway's mapping: typed forms become Pid, Crash,
 * Uint8Array ($bin), plain objects ($map) and Map ($kv).
 * @param {string} text
 * @returns {unknown}
 */
export function parse(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new BadValueError(`malformed JSON: ${/** @type {Error} */ (err).message}`);
  }
  return fromJSON(raw);
}

/**
 * Maps a value JSON.parse returned to its typed form.
 * @param {unknown} raw
 * @returns {unknown}
 */
export function fromJSON(raw) {
  return decode(raw, 0);
}

/**
 * @param {unknown} raw
 * @param {number} depth
 * @returns {unknown}
 */
function decode(raw, depth) {
  if (depth > MAX_DEPTH) throw new BadValueError(`nested deeper than ${MAX_DEPTH}`);
  if (Array.isArray(raw)) return raw.map((item) => decode(item, depth + 1));
  if (raw === null || typeof raw !== 'object') return raw;
  const keys = Object.keys(raw);
  const typed = keys.find((k) => k.startsWith('$'));
  if (typed === undefined) return mapEntries(/** @type {Record<string, unknown>} */ (raw), depth);
  if (keys.length !== 1) throw new BadValueError(`an object with key ${JSON.stringify(typed)} must have no other key`);
  const body = /** @type {any} */ (raw)[typed];
  switch (typed) {
    case '$pid':
      if (!Array.isArray(body) || body.length !== 3) throw new BadValueError('$pid takes [node, creation, serial]');
      return new Pid(body[0], body[1], body[2]);
    case '$bin':
      if (typeof body !== 'string' || body.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(body)) {
        throw new BadValueError('$bin takes a hex string');
      }
      return new Uint8Array(Buffer.from(body, 'hex'));
    case '$crash':
      if (!Array.isArray(body) || body.length !== 3) throw new BadValueError('$crash takes [type, message, traceback]');
      return new Crash(body[0], body[1], body[2]);
    case '$map':
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadValueError('$map takes an object');
      return mapEntries(body, depth);
    case '$kv':
      if (!Array.isArray(body)) throw new BadValueError('$kv takes a list of [key, value] pairs');
      return new Map(body.map((pair) => {
        if (!Array.isArray(pair) || pair.length !== 2) throw new BadValueError('$kv takes a list of [key, value] pairs');
        const key = decode(pair[0], depth + 1);
        if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
          throw new BadValueError('$kv takes [key, value] pairs whose keys are strings or {"$bin": ...}');
        }
        return [key, decode(pair[1], depth + 1)];
      }));
    default:
      throw new BadValueError(`unknown typed form ${JSON.stringify(typed)}`);
  }
}

/**
 * @param {Record<string, unknown>} obj
 * @param {number} depth
 * @returns {Record<string, unknown>}
 */
function mapEntries(obj, depth) {
  // fromEntries defines own properties, so a "__proto__" key stays a key.
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, decode(v, depth + 1)]));
}
