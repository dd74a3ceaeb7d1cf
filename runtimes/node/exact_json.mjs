// Exact JSON for typed values: parseExact keeps the text of every number that is not a
// safe integer, stringifyExact writes a BigInt or a Decimal back as its digits, and
// exactNumber makes such a text the value a step sees (runtimes/node/typed.mjs).
// Standard library only.

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

// A number kept as its JSON text (parseExact); only exact_json.mjs and typed.mjs see these.
export class RawNumber {
  constructor(text) { this.text = text; }
}

// An exact decimal number that no double holds: its text, e.g. '0.1000000000000000055'.
export class Decimal {
  constructor(text) {
    const value = String(text);
    NUMBER_RE.lastIndex = 0;
    if (!NUMBER_RE.test(value) || NUMBER_RE.lastIndex !== value.length) {
      throw new TypeError(`${JSON.stringify(value)} is not a decimal number`);
    }
    this.text = value;
  }

  toString() { return this.text; }

  toJSON() { return this.text; }

  valueOf() { return Number(this.text); }
}

// JSON.parse, except that a number which is not a safe integer stays a RawNumber.
export function parseExact(text) {
  let i = 0;
  const fail = (what) => { throw new SyntaxError(`${what} at position ${i} of the JSON text`); };
  const space = () => { while (' \t\n\r'.includes(text[i]) && i < text.length) i += 1; };
  const value = (depth) => {
    if (depth > 512) fail('nesting too deep');
    space();
    const c = text[i];
    if (c === '{') return object(depth);
    if (c === '[') return array(depth);
    if (c === '"') return string();
    for (const [word, result] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) { i += word.length; return result; }
    }
    NUMBER_RE.lastIndex = i;
    const match = NUMBER_RE.exec(text);
    if (!match) fail('unexpected character');
    i = NUMBER_RE.lastIndex;
    const number = Number(match[0]);
    return Number.isSafeInteger(number) && /^-?\d+$/.test(match[0]) ? number : new RawNumber(match[0]);
  };
  const string = () => {
    const start = i;
    for (i += 1; text[i] !== '"'; i += 1) {
      if (i >= text.length) fail('unterminated string');
      if (text[i] === '\\') i += 1;
    }
    i += 1;
    return JSON.parse(text.slice(start, i));
  };
  const array = (depth) => {
    const out = [];
    i += 1;
    space();
    if (text[i] === ']') { i += 1; return out; }
    for (;;) {
      out.push(value(depth + 1));
      space();
      if (text[i] === ']') { i += 1; return out; }
      if (text[i] !== ',') fail('expected , or ]');
      i += 1;
    }
  };
  const object = (depth) => {
    const out = {};
    i += 1;
    space();
    if (text[i] === '}') { i += 1; return out; }
    for (;;) {
      space();
      if (text[i] !== '"') fail('expected a string key');
      const key = string();
      space();
      if (text[i] !== ':') fail('expected :');
      i += 1;
      Object.defineProperty(out, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
      space();
      if (text[i] === '}') { i += 1; return out; }
      if (text[i] !== ',') fail('expected , or }');
      i += 1;
    }
  };
  const result = value(0);
  space();
  if (i !== text.length) fail('extra data');
  return result;
}

// Compact JSON where a BigInt or a Decimal is written as its digits.
export function stringifyExact(value) {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Decimal) return value.text;
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`${value} is not JSON`);
  if (Array.isArray(value)) return `[${value.map(stringifyExact).join(',')}]`;
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const pairs = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${stringifyExact(v)}`);
    return `{${pairs.join(',')}}`;
  }
  return JSON.stringify(value);
}

// sign, significant digits and exponent: equal for equal decimal values.
function canonical(text) {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  let digits = match[2] + (match[3] || '');
  let exponent = Number(match[4] || 0) - (match[3] || '').length;
  digits = digits.replace(/^0+/, '');
  if (!digits) return '0';
  const trailing = digits.length - digits.replace(/0+$/, '').length;
  digits = digits.slice(0, digits.length - trailing);
  exponent += trailing;
  return `${match[1]}${digits}e${exponent}`;
}

// An integer: a number when it is safe, else a BigInt. Otherwise a number when
// the double's shortest text is the value's, else a Decimal.
export function exactNumber(text) {
  const number = Number(text);
  const [, sign, digits, exponent] = /^(-?)(\d+)e(-?\d+)$/.exec(canonical(text)) || ['', '', '0', '0'];
  if (Number(exponent) >= 0) {
    if (Number.isSafeInteger(number)) return number;
    if (Number(exponent) < 400) return BigInt(`${sign}${digits}${'0'.repeat(Number(exponent))}`);
  } else if (Number.isFinite(number) && canonical(String(number)) === canonical(text)) {
    return number;
  }
  return new Decimal(text);
}
