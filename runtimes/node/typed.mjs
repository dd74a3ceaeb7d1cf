// Typed values of code steps: the wire encoding (seed 004) and its JavaScript
// values. The same codes and rules as runtimes/python/typed.py (read its table
// first); what differs is what a step sees, since JavaScript has no date-only,
// UUID or decimal type:
//
//   b      boolean
//   d      a 'YYYY-MM-DD' string (an output may also be a Date: its UTC day)
//   dt     a Date (millisecond precision, as Date keeps); written back as
//          toISOString(), in UTC
//   n      a number when the number holds every digit of the value (the
//          shortest text of the double is the value's text), a BigInt for a
//          bigger integer, else a Decimal (below) holding the exact text
//   p, s   a string (p: E.164 checked)
//   u      a lower-case UUID string
//   e<obj> an EntityRecord {objectId, recordId}
//   o<obj,field> a FieldOption {objectId, fieldId, option}
//   a[T]   an array of T; l an array of plain JSON (numbers as JSON.parse
//          makes them); a["f"] an array of file id strings
//
// Numbers never pass through a double on the way in: frames of step workers
// are parsed with parseExact, which keeps the text of every number that is
// not a safe integer, and stringifyExact writes the outputs' numbers back as
// their digits (both in exact_json.mjs). Standard library only.

import { Decimal, RawNumber, exactNumber, parseExact, stringifyExact } from './exact_json.mjs';

export { Decimal, parseExact, stringifyExact };

export const SCALARS = {
  b: 'boolean', d: 'date', dt: 'date-time', n: 'number', p: 'phone number', s: 'string', u: 'UUID',
};
export const FILES = 'a["f"]';
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_RE = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

export class TypedValueError extends Error {
  constructor(direction, field, code, received) {
    const expected = typeof code === 'string' ? code : code.describe();
    super(`${direction} "${field}": expected ${expected}, received ${received}`);
    this.name = 'TypedValueError';
    this.field = field;
  }
}

export class EntityRecord {
  constructor(objectId, recordId) { Object.assign(this, { objectId, recordId }); }
}

export class FieldOption {
  constructor(objectId, fieldId, option) { Object.assign(this, { objectId, fieldId, option }); }
}

export class TypeCode {
  constructor(kind, text, extra = {}) { Object.assign(this, { kind, text, ...extra }); }

  describe() {
    if (this.kind in SCALARS) return `${this.text} (${SCALARS[this.kind]})`;
    if (this.kind === 'a') return `${this.text} (array of ${this.item.describe()})`;
    const names = { e: 'entity record', o: 'field option', l: 'untyped list', f: 'files' };
    return `${this.text} (${names[this.kind]})`;
  }
}

function uuidInCode(text, code) {
  if (!UUID_RE.test(text.trim())) throw new Error(`${code}: ${JSON.stringify(text)} is not a UUID`);
  return text.trim().toLowerCase();
}

// A type code from its text; an Error saying what is allowed.
export function parseType(text) {
  if (typeof text !== 'string') throw new Error(`a type code is a string, not ${typeof text}`);
  if (text in SCALARS || text === 'l') return new TypeCode(text, text);
  if (text === FILES || text === 'a[f]') return new TypeCode('f', FILES);
  if (text.startsWith('e<') && text.endsWith('>')) {
    const objectId = uuidInCode(text.slice(2, -1), text);
    return new TypeCode('e', `e<${objectId}>`, { objectId });
  }
  if (text.startsWith('o<') && text.endsWith('>') && text.split(',').length === 2) {
    const [first, second] = text.slice(2, -1).split(',');
    const objectId = uuidInCode(first, text);
    const fieldId = uuidInCode(second, text);
    return new TypeCode('o', `o<${objectId},${fieldId}>`, { objectId, fieldId });
  }
  if (text.startsWith('a[') && text.endsWith(']')) {
    const item = parseType(text.slice(2, -1));
    if (['a', 'l', 'f'].includes(item.kind)) {
      throw new Error(`${text}: an array holds b, d, dt, n, p, s, u, e<uuid> or o<uuid,uuid>`);
    }
    return new TypeCode('a', `a[${item.text}]`, { item });
  }
  throw new Error(`unknown type code ${JSON.stringify(text)} (known: b, d, dt, n, p, s, u, `
    + `e<uuid>, o<uuid,uuid>, a[T], l, ${FILES})`);
}

// --- decoding: wire -> JavaScript -------------------------------------------------

const show = (value, limit = 120) => {
  let text;
  try {
    text = value instanceof RawNumber ? value.text : stringifyExact(plainOrRaw(value));
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length <= limit ? text : `${text.slice(0, limit - 3)}...`;
};

const plainOrRaw = (value) => {
  if (value instanceof RawNumber) return new Decimal(value.text);
  if (Array.isArray(value)) return value.map(plainOrRaw);
  if (value !== null && typeof value === 'object' && value.constructor === Object) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainOrRaw(v)]));
  }
  return value;
};

const isTypedValue = (wire) => wire !== null && typeof wire === 'object'
  && !Array.isArray(wire) && !(wire instanceof RawNumber) && Object.keys(wire).length === 1;

function normalCode(key) {
  try {
    return parseType(key).text;
  } catch {
    return key;
  }
}

// The JavaScript value of a typed value received for `field`; TypedValueError.
export function decode(code, wire, field) {
  if (wire === null || wire === undefined) return null;
  if (!isTypedValue(wire)) throw new TypedValueError('input', field, code, `${show(wire)} (not a typed value)`);
  const [[key, raw]] = Object.entries(wire);
  if (normalCode(key) !== code.text) {
    throw new TypedValueError('input', field, code, `a value of type ${key}: ${show(wire)}`);
  }
  if (raw === null) return null;
  try {
    return decodeRaw(code, raw);
  } catch (err) {
    throw new TypedValueError('input', field, code, `${show(raw)} (${err.message})`);
  }
}

// convert applied to every item; an error says which item.
function each(items, convert) {
  return items.map((item, index) => {
    try {
      return convert(item);
    } catch (err) {
      throw new Error(`item ${index}: ${err.message}`);
    }
  });
}

function expectArray(raw) {
  if (!Array.isArray(raw)) throw new Error('the value must be an array');
  return raw;
}

function expectString(raw) {
  if (typeof raw !== 'string') throw new Error('the value must be a string');
  return raw;
}

function decodeRaw(code, raw) {
  switch (code.kind) {
    case 'a': return each(expectArray(raw), (x) => (x === null ? null : decodeRaw(code.item, x)));
    case 'l': return expectArray(raw).map(toPlain);
    case 'f': return each(expectArray(raw), fileId);
    case 'b':
      if (typeof raw !== 'boolean') throw new Error('the value must be true or false');
      return raw;
    case 'n':
      if (typeof raw === 'number') return raw;
      if (raw instanceof RawNumber) return exactNumber(raw.text);
      throw new Error('the value must be a JSON number');
    case 'e': return new EntityRecord(code.objectId, strictUuid(expectString(raw)));
    case 'o': return new FieldOption(code.objectId, code.fieldId, option(expectString(raw)));
    case 'd': return checkDate(expectString(raw));
    case 'dt': return parseDateTime(expectString(raw));
    case 'p': return phone(expectString(raw));
    case 'u': return strictUuid(expectString(raw));
    default: return expectString(raw);
  }
}

function toPlain(value) {
  if (value instanceof RawNumber) return Number(value.text);
  if (Array.isArray(value)) return value.map(toPlain);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]));
  }
  return value;
}

function checkDate(text) {
  const match = DATE_RE.exec(text);
  if (!match) throw new Error('a date is written YYYY-MM-DD');
  const [y, m, d] = match.slice(1).map(Number);
  const day = new Date(Date.UTC(2000, m - 1, d));
  day.setUTCFullYear(y);
  if (y < 1 || day.getUTCFullYear() !== y || day.getUTCMonth() !== m - 1 || day.getUTCDate() !== d) {
    throw new Error(`${text} is not a calendar date`);
  }
  return text;
}

function parseDateTime(text) {
  const match = DATETIME_RE.exec(text);
  if (!match) {
    throw new Error('a date-time is written YYYY-MM-DDTHH:MM:SS with Z or an offset such as +02:00');
  }
  checkDate(match[1]);
  if (Number(match[2]) > 23 || Number(match[3]) > 59 || Number(match[4] || 0) > 59) {
    throw new Error('the time is out of range');
  }
  const value = new Date(text.slice(0, 10) + 'T' + text.slice(11).replace(/z$/, 'Z'));
  if (Number.isNaN(value.getTime())) throw new Error('not an ISO 8601 date-time');
  return value;
}

function phone(text) {
  if (!/^\+\d+$/.test(text)) throw new Error('an E.164 phone number is + then digits only, e.g. +14155550100');
  if (text.length < 3 || text.length > 16 || text[1] === '0') {
    throw new Error('an E.164 number has 2 to 15 digits, the first not 0');
  }
  return text;
}

function strictUuid(text) {
  if (!UUID_RE.test(text)) throw new Error('a UUID is written as 8-4-4-4-12 hex digits');
  return text.toLowerCase();
}

function option(text) {
  if (!text) throw new Error('a field option is a non-empty string');
  return text;
}

function fileId(value) {
  if (typeof value !== 'string' || !value) throw new Error(`a file id is a non-empty string, not ${show(value)}`);
  return value;
}

// --- encoding: JavaScript -> wire ----------------------------------------------------

// The typed value of `value` for an output `field`; TypedValueError.
export function encode(code, value, field) {
  if (value === null || value === undefined) return { [code.text]: null };
  try {
    return { [code.text]: encodeRaw(code, value) };
  } catch (err) {
    const kind = value === null ? 'null' : value.constructor?.name || typeof value;
    throw new TypedValueError('output', field, code, `${kind} ${show(value)} (${err.message})`);
  }
}

function encodeRaw(code, value) {
  if (['a', 'l', 'f'].includes(code.kind)) {
    if (!Array.isArray(value)) throw new Error('the value must be an array');
    if (code.kind === 'l') return each(value, (x) => checkPlain(x, 0));
    if (code.kind === 'f') return each(value, fileId);
    return each(value, (x) => (x === null || x === undefined ? null : encodeRaw(code.item, x)));
  }
  return ENCODERS[code.kind](code, value);
}

function encodeNumber(value) {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('the number must be finite');
    return value;
  }
  if (typeof value === 'bigint' || value instanceof Decimal) return value;
  throw new Error('the value must be a number, a BigInt or a Decimal');
}

function encodeDateTime(value) {
  const date = typeof value === 'string' ? parseDateTime(value) : value;
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new Error('the value must be a valid Date (or an ISO 8601 string with an offset)');
  }
  return date.toISOString();
}

function encodeDate(value) {
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString().slice(0, 10);
  if (typeof value !== 'string') throw new Error("the value must be a 'YYYY-MM-DD' string or a Date");
  return checkDate(value);
}

function encodeText(code, value) {
  if (typeof value !== 'string') throw new Error('the value must be a string');
  return code.kind === 'p' ? phone(value) : value;
}

function encodeRecord(code, value) {
  if (value instanceof EntityRecord) {
    if (String(value.objectId).toLowerCase() !== code.objectId) {
      throw new Error(`the record belongs to object ${value.objectId}`);
    }
    return strictUuid(String(value.recordId));
  }
  return strictUuid(encodeText(code, value));
}

function encodeOption(code, value) {
  if (value instanceof FieldOption) {
    if (String(value.objectId).toLowerCase() !== code.objectId
        || String(value.fieldId).toLowerCase() !== code.fieldId) {
      throw new Error(`the option belongs to o<${value.objectId},${value.fieldId}>`);
    }
    return option(encodeText(code, value.option));
  }
  return option(encodeText(code, value));
}

const ENCODERS = {
  b: (code, value) => {
    if (typeof value !== 'boolean') throw new Error('the value must be a boolean');
    return value;
  },
  n: (code, value) => encodeNumber(value),
  d: (code, value) => encodeDate(value),
  dt: (code, value) => encodeDateTime(value),
  p: encodeText,
  s: encodeText,
  u: (code, value) => strictUuid(encodeText(code, value)),
  e: encodeRecord,
  o: encodeOption,
};

// Plain JSON only (what `l` holds): the error says what is not.
function checkPlain(value, depth) {
  if (depth > 100) throw new Error('the list is nested too deep');
  if (value === null || ['string', 'boolean'].includes(typeof value)) return value;
  if (typeof value === 'number' || typeof value === 'bigint' || value instanceof Decimal) return encodeNumber(value);
  if (Array.isArray(value)) return value.map((x) => checkPlain(x, depth + 1));
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, checkPlain(v, depth + 1)]));
  }
  throw new Error(`a ${value?.constructor?.name || typeof value} is not plain JSON`);
}
