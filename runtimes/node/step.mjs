// Code steps in JavaScript: main.js is the body of an async function run per
// call with `inputs` and `outputs` in scope (also require, module, exports,
// __filename, __dirname as CommonJS gives them; `await` works at its top level;
// `import` statements do not, use require). The same model as
// runtimes/python/step.py: compiled once per worker, declared inputs and
// outputs checked with typed.mjs, outputs.log with the limits of protocol.py.
// Standard library only.

import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import vm from 'node:vm';
import { createRequire } from 'node:module';
import * as typed from './typed.mjs';

export const LOG_MESSAGE_MAX = 8 * 1024; // bytes of one message, its marker included
export const LOG_TOTAL_MAX = 100 * 1024; // bytes of all messages kept for one execution
const LOG_MARKER = (dropped) => ` [truncated: ${dropped} more bytes]`;
const RESERVED_WORDS = new Set(('break case catch class const continue debugger default delete do '
  + 'else enum export extends false finally for function if import in instanceof new null return '
  + 'super switch this throw true try typeof var void while with yield let static implements '
  + 'interface package private protected public await and as assert async del elif except from '
  + 'global is lambda nonlocal not or pass raise None True False').split(' '));

const named = (name, message) => Object.assign(new Error(message), { name });

export function nameProblem(name, side) {
  const what = side.slice(0, -1);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || RESERVED_WORDS.has(name)) {
    return `${what} name "${name}" is not an identifier (letters, digits, _)`;
  }
  if (name.startsWith('_') || (side === 'outputs' && name === 'log')) return `${what} name "${name}" is reserved`;
  return null;
}

// {inputs: Map name -> TypeCode, outputs: ...} from the --step-spec JSON text;
// every problem at once in one StepSpecError.
export function parseSpec(text) {
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch (err) {
    throw named('StepSpecError', `--step-spec is not JSON: ${err.message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw named('StepSpecError', '--step-spec must be a JSON object with inputs and outputs');
  }
  const problems = [];
  const spec = {};
  for (const side of ['inputs', 'outputs']) {
    let declared = data[side] || {};
    if (typeof declared !== 'object' || Array.isArray(declared)) {
      problems.push(`${side} must be an object of name: type code`);
      declared = {};
    }
    spec[side] = new Map();
    for (const [name, code] of Object.entries(declared)) {
      const problem = nameProblem(name, side);
      if (problem) {
        problems.push(problem);
        continue;
      }
      try {
        spec[side].set(name, typed.parseType(code));
      } catch (err) {
        problems.push(`${side.slice(0, -1)} "${name}": ${err.message}`);
      }
    }
  }
  if (problems.length) throw named('StepSpecError', problems.join('; '));
  return spec;
}

export function describeSpec(spec) {
  const side = (map) => Object.fromEntries([...map].map(([name, code]) => [name, code.text]));
  return { inputs: side(spec.inputs), outputs: side(spec.outputs) };
}

// main compiled once into an async function; a SyntaxError names main.js:line.
export function compileBody(source, main) {
  const file = path.join(path.resolve(source), main);
  if (!fs.existsSync(file)) {
    throw named('FileNotFoundError', `the project has no ${main} (looked in ${source})`);
  }
  const body = fs.readFileSync(file, 'utf8').replace(/^#!.*/, '');
  const wrapper = '(async function (inputs, outputs, require, module, exports, __filename, __dirname) {\n'
    + `${body}\n})`;
  const script = new vm.Script(wrapper, { filename: file, lineOffset: -1 });
  return { fn: script.runInThisContext(), file };
}

export class Log {
  constructor() {
    this.entries = [];
    this.keptBytes = 0;
    this.discarded = 0;
  }

  add(message) {
    if (this.discarded) {
      this.discarded += 1;
      return;
    }
    const text = typeof message === 'string' ? message : util.inspect(message);
    const data = truncate(Buffer.from(text, 'utf8'));
    if (this.keptBytes + data.length > LOG_TOTAL_MAX) {
      this.discarded = 1;
      return;
    }
    this.keptBytes += data.length;
    this.entries.push({ ts: new Date().toISOString(), message: data.toString('utf8') });
  }
}

// At most LOG_MESSAGE_MAX bytes, the marker included, cut on a character boundary.
function truncate(data) {
  if (data.length <= LOG_MESSAGE_MAX) return data;
  let room = LOG_MESSAGE_MAX - Buffer.byteLength(LOG_MARKER(data.length));
  while (room > 0 && (data[room] & 0xc0) === 0x80) room -= 1;
  return Buffer.concat([data.subarray(0, room), Buffer.from(LOG_MARKER(data.length - room))]);
}

function inputsObject(values) {
  const declared = () => [...values.keys()].join(', ') || 'none';
  return new Proxy(Object.freeze(Object.fromEntries(values)), {
    get(target, name) {
      if (typeof name === 'symbol' || values.has(name) || name in target) return target[name];
      if (name === 'toJSON' || name === 'then') return undefined;
      throw new TypeError(`no input ${JSON.stringify(name)} (declared inputs: ${declared()})`);
    },
    set() {
      throw new TypeError('inputs are read-only: write to outputs');
    },
  });
}

class Outputs {
  constructor(codes, log) {
    this.codes = codes;
    this.values = new Map();
    this.log = log;
  }

  set(name, value) {
    const code = this.codes.get(name);
    if (!code) {
      const declared = [...this.codes.keys()].join(', ') || 'none';
      throw named('OutputError', `output "${String(name)}" is not declared (declared outputs: ${declared})`);
    }
    try {
      typed.encode(code, value, name);
    } catch (err) {
      throw named('OutputError', err.message);
    }
    this.values.set(name, value);
  }

  // The object the body sees: outputs.x = v checks v; outputs.log(message).
  view() {
    const log = (message) => this.log.add(message);
    return new Proxy({}, {
      get: (target, name) => {
        if (name === 'log') return log;
        if (typeof name === 'string' && this.codes.has(name)) return this.values.get(name) ?? null;
        return undefined;
      },
      set: (target, name, value) => {
        this.set(name, value);
        return true;
      },
    });
  }

  // [typed outputs, problems]: every declared one (unset = null) when `every`,
  // else only those written; a value changed into a wrong type after it was
  // written is a problem and left out.
  encoded(every) {
    const out = {};
    const problems = [];
    for (const [name, code] of this.codes) {
      if (!every && !this.values.has(name)) continue;
      try {
        out[name] = typed.encode(code, this.values.get(name) ?? null, name);
      } catch (err) {
        problems.push(err.message);
      }
    }
    return [out, problems];
  }
}

export class Step {
  constructor(source, main, specText) {
    this.spec = parseSpec(specText);
    const { fn, file } = compileBody(source, main);
    this.fn = fn;
    this.file = file;
    this.require = createRequire(file);
  }

  // Every declared input (missing = null); an InputError naming each bad one.
  decodeInputs(wire) {
    const given = wire ?? {};
    if (typeof given !== 'object' || Array.isArray(given)) {
      throw named('InputError', 'inputs must be a JSON object of name: typed value');
    }
    const declared = [...this.spec.inputs.keys()].join(', ') || 'none';
    const problems = Object.keys(given).filter((name) => !this.spec.inputs.has(name))
      .map((name) => `input "${name}" is not declared (declared inputs: ${declared})`);
    const values = new Map();
    for (const [name, code] of this.spec.inputs) {
      try {
        values.set(name, typed.decode(code, given[name], name));
      } catch (err) {
        problems.push(err.message);
      }
    }
    if (problems.length) throw named('InputError', problems.join('; '));
    return values;
  }

  // Runs the step for one frame's inputs; fills result's ok, error, outputs
  // (partial ones after an error), logs and logs_discarded.
  async execute(wire, result, errorInfo) {
    const log = new Log();
    const outputs = new Outputs(this.spec.outputs, log);
    result.ok = false;
    let inputs = null;
    try {
      inputs = inputsObject(this.decodeInputs(wire));
    } catch (err) {
      result.error = { type: 'InputError', message: err.message, traceback: '' };
    }
    if (inputs) {
      try {
        const module = { exports: {} };
        await this.fn.call(undefined, inputs, outputs.view(), this.require, module, module.exports,
          this.file, path.dirname(this.file));
        result.ok = true;
      } catch (err) {
        result.error = errorInfo(err);
      }
    }
    const [values, problems] = outputs.encoded(result.ok);
    if (problems.length && result.ok) {
      result.ok = false;
      result.error = { type: 'OutputError', message: problems.join('; '), traceback: '' };
    }
    Object.assign(result, { outputs: values, logs: log.entries, logs_discarded: log.discarded });
  }
}

// The result frame's JSON: the outputs travel as JSON text in "outputs_json"
// (exact numbers that a daemon can forward without parsing them); past
// maxFrame the outputs are dropped for a ResultTooLarge error.
export function resultText(result, maxFrame) {
  const { outputs, ...rest } = result;
  const text = JSON.stringify({ ...rest, outputs_json: typed.stringifyExact(outputs ?? {}) });
  const size = Buffer.byteLength(text);
  if (size <= maxFrame) return text;
  return JSON.stringify({
    ...rest,
    ok: false,
    logs: [],
    outputs_json: '{}',
    error: {
      type: 'ResultTooLarge',
      traceback: '',
      message: `the step's result is ${size} bytes as JSON, over the ${maxFrame} allowed`,
    },
  });
}
