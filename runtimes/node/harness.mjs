// Node harness: one worker process serving calls to a project's main.js.
//
// Spawned by runtimes/supervisor.py, one process per worker:
//   node harness.mjs --fd 3 --status-fd 4 --source DIR [--main main.js]
//                    [--max-output BYTES] [--max-frame BYTES]
// fd 3 is the worker socket (frames: see runtimes/protocol.py), fd 4 a pipe on
// which one JSON line is written once main is loaded: {"t":"ready",...} with
// the function list, or {"t":"load_error","error":{...}} (then exit 3).
//
// main is loaded as an ES module when it is .mjs, or .js under a package.json
// with "type": "module" (the nearest one, as node decides); otherwise as
// CommonJS with require. Exposed: the exported functions, not classes (ESM:
// named exports, not `default`; CJS: the function-valued properties of
// module.exports).
// A call passes the payload as the one argument and awaits the result.
// Output capture replaces process.stdout.write / process.stderr.write for the
// length of a call (console.* go through them); writes from child processes
// or native addons straight to fd 1/2 are not captured.
// The parts: errors.mjs (error info), capture.mjs (output capture), frames.mjs
// (the wire framing), concurrently.mjs (calls side by side, concurrency > 1).
// Standard library only.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Capture } from './capture.mjs';
import { concurrentMethods } from './concurrently.mjs';
import { errorInfo, harnessError, locateSyntaxError } from './errors.mjs';
import { FrameDecoder, encode, frameOfText } from './frames.mjs';
import { Step, describeSpec, resultText } from './step.mjs';
import { parseExact } from './typed.mjs';

const LOAD_ERROR_EXIT = 3;

function parseArgs(argv) {
  const args = {
    fd: 3, statusFd: 4, source: null, main: 'main.js',
    maxOutput: 1024 * 1024, maxFrame: 16 * 1024 * 1024, kind: 'functions', stepSpec: null,
    concurrency: 1,
  };
  const names = {
    '--fd': 'fd', '--status-fd': 'statusFd', '--source': 'source', '--main': 'main',
    '--max-output': 'maxOutput', '--max-frame': 'maxFrame', '--kind': 'kind',
    '--step-spec': 'stepSpec', '--concurrency': 'concurrency',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key) throw new Error(`unknown argument ${argv[i]}`);
    args[key] = typeof args[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!args.source) throw new Error('--source is required');
  if (!['functions', 'step'].includes(args.kind)) throw new Error(`unknown --kind ${args.kind}`);
  return args;
}

// --- loading ----------------------------------------------------------------

function isModule(file) {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        return JSON.parse(fs.readFileSync(pkg, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (path.dirname(dir) === dir) return false;
  }
}

async function loadProject(source, main) {
  const file = path.join(path.resolve(source), main);
  if (!fs.existsSync(file)) {
    const err = new Error(`the project has no ${main} (looked in ${source})`);
    err.name = 'FileNotFoundError';
    throw err;
  }
  const functions = new Map();
  const isFunction = (value) => typeof value === 'function'
    && !/^class[\s{]/.test(Function.prototype.toString.call(value));
  if (isModule(file)) {
    const ns = await import(pathToFileURL(file).href);
    for (const name of Object.keys(ns)) {
      if (name !== 'default' && isFunction(ns[name])) functions.set(name, ns[name]);
    }
  } else {
    const exported = createRequire(file)(file);
    if (exported && (typeof exported === 'object' || typeof exported === 'function')) {
      for (const name of Object.keys(exported)) {
        if (isFunction(exported[name])) functions.set(name, exported[name]);
      }
    }
  }
  return functions;
}

// --- calls ------------------------------------------------------------------

// JSON.stringify silently turns these into null or drops them: refuse instead.
function strictJson(key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new TypeError(`${value} is not a JSON number${key ? ` (at key "${key}")` : ''}`);
  }
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new TypeError(`a ${typeof value} is not JSON${key ? ` (at key "${key}")` : ''}`);
  }
  return value;
}

const WRONG_KIND = {
  run: 'this script is a set of functions: call one of them (a `call` frame), not `run`',
  call: 'this script is a code step: run it (a `run` frame), it has no functions',
};

class Worker {
  // step: a Step for a code step (it takes `run` frames, not `call`).
  constructor(functions, args, step = null) {
    this.functions = functions;
    this.step = step;
    this.maxFrame = args.maxFrame;
    // --concurrency N > 1: calls run side by side on the event loop (a code step's
    // executions never do); each call's output is found through its async context.
    this.concurrency = step ? 1 : Math.max(1, args.concurrency || 1);
    this.als = this.concurrency > 1 ? new AsyncLocalStorage() : null;
    this.capture = new Capture(args.maxOutput, this.als);
    this.inFlight = new Map(); // concurrent calls by id
    this.corked = false;
  }

  async handle(message) {
    if (message.t === 'ping') return encode({ t: 'pong', id: message.id ?? null, pid: process.pid });
    if (message.t === 'call') return this.call(message);
    if (message.t === 'run') return this.run(message);
    process.stderr.write(`scriptd worker: unknown frame ${JSON.stringify(message.t)}\n`);
    return null;
  }

  async call(message) {
    const name = message.function;
    const result = { t: 'result', id: message.id ?? null };
    this.current = { result, name };
    const fn = typeof name === 'string' && this.functions.has(name) ? this.functions.get(name) : null;
    this.capture.start();
    const wall0 = performance.now();
    const cpu0 = process.cpuUsage();
    Object.assign(this.current, { wall0, cpu0 });
    try {
      if (this.step) {
        result.error = harnessError('WrongKind', WRONG_KIND.call);
      } else if (!fn) {
        const known = [...this.functions.keys()].join(', ') || 'none';
        result.error = harnessError('FunctionNotFound',
          `main.js has no function ${JSON.stringify(name)} (has: ${known})`);
      } else {
        const value = await fn(message.payload === undefined ? {} : message.payload);
        result.value = value === undefined ? null : value;
      }
    } catch (err) {
      result.error = errorInfo(err);
    }
    this.current = null;
    return this.finish(result, name, wall0, cpu0);
  }

  // A code step's execution for one `run` frame.
  async run(message) {
    const result = { t: 'result', id: message.id ?? null };
    if (!this.step) return encode({ ...result, ok: false, error: harnessError('WrongKind', WRONG_KIND.run) });
    this.current = { result, name: null, step: true };
    this.capture.start();
    const wall0 = performance.now();
    const cpu0 = process.cpuUsage();
    Object.assign(this.current, { wall0, cpu0 });
    await this.step.execute(message.inputs, result, errorInfo);
    this.current = null;
    return this.finish(result, null, wall0, cpu0);
  }

  finish(result, name, wall0, cpu0, sinks = null) {
    const cpu = process.cpuUsage(cpu0);
    Object.assign(result, { ok: !result.error }, this.capture.stop(sinks), {
      cpu_ms: Math.round((cpu.user + cpu.system)) / 1000,
      wall_ms: Math.round((performance.now() - wall0) * 1000) / 1000,
    });
    return this.encodeResult(result, name);
  }

  // An exception no promise of the call catches (a throwing timer callback, an
  // unhandled rejection) leaves the process in an unknown state, as node says:
  // the call gets it as its error, then the worker exits and is replaced. Concurrent
  // calls cannot tell whose it was: each gets it marked "crashed" (the daemon answers
  // them as a crashed worker, naming the exception).
  crash(err) {
    if (this.inFlight.size && this.sock) {
      const frames = [...this.inFlight.values()].map((call) => {
        call.result.error = errorInfo(err);
        call.result.crashed = true;
        return this.answer(call);
      });
      this.sock.write(Buffer.concat(frames), () => process.exit(1));
      return;
    }
    if (this.current && this.sock) {
      const { result, name, wall0, cpu0 } = this.current;
      this.current = null;
      result.error = errorInfo(err);
      this.sock.write(this.finish(result, name, wall0, cpu0), () => process.exit(1));
      return;
    }
    process.stderr.write(`scriptd worker: uncaught ${errorInfo(err).traceback || String(err)}\n`);
    process.exit(1);
  }

  encodeResult(result, name) {
    if (this.step && name === null) return frameOfText(resultText(result, this.maxFrame));
    let text;
    try {
      text = JSON.stringify(result, strictJson);
    } catch (err) {
      delete result.value;
      result.ok = false;
      result.error = harnessError('SerializationError',
        `the value returned by ${name}() is not JSON: ${err.message}`);
      text = JSON.stringify(result);
    }
    const size = Buffer.byteLength(text, 'utf8');
    if (size > this.maxFrame) {
      delete result.value;
      result.ok = false;
      result.error = harnessError('ResultTooLarge',
        `the result of ${name}() is ${size} bytes as JSON, over the ${this.maxFrame} allowed`);
      return frameOfText(JSON.stringify(result));
    }
    return frameOfText(text, size);
  }

  // Frames are handled one at a time, in order, like the Python worker (concurrency
  // 1), or each call as it comes, its answer written when it ends (concurrency > 1).
  serve(fd) {
    const sock = new net.Socket({ fd, readable: true, writable: true });
    this.sock = sock;
    process.on('uncaughtException', (err) => this.crash(err));
    if (this.concurrency > 1) {
      this.serveConcurrently(sock);
      return;
    }
    const decoder = new FrameDecoder(this.maxFrame, this.step ? parseExact : JSON.parse);
    let chain = Promise.resolve();
    sock.on('data', (chunk) => {
      let messages;
      try {
        messages = decoder.feed(chunk);
      } catch (err) {
        process.stderr.write(`scriptd worker: ${err.message}\n`);
        process.exit(2);
      }
      for (const message of messages) {
        chain = chain.then(() => this.handle(message)).then((reply) => {
          if (reply) sock.write(reply);
        });
      }
    });
    sock.on('end', () => chain.then(() => process.exit(0)));
    sock.on('error', () => process.exit(0));
  }
}

// callConcurrently, cancel, answer, serveConcurrently, write (runtimes/node/concurrently.mjs).
Object.assign(Worker.prototype, concurrentMethods);

function writeStatus(fd, message) {
  fs.writeSync(fd, `${JSON.stringify(message)}\n`);
  fs.closeSync(fd);
}

// Past the memory limit the kernel should kill a worker (replaced at once),
// not the supervisor; raising one's own oom_score_adj needs no privilege.
function preferOomVictim() {
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', '500');
  } catch {
    // no /proc: nothing to prefer
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  preferOomVictim();
  if (process.env.HTTPS_PROXY) {
    // Before the project loads: a module may make requests (or agents) at import.
    const { routeThroughProxy } = await import('./egress.mjs');
    routeThroughProxy();
  }
  const t0 = performance.now();
  let functions = new Map();
  let step = null;
  try {
    if (args.kind === 'step') step = new Step(args.source, args.main, args.stepSpec);
    else functions = await loadProject(args.source, args.main);
  } catch (err) {
    const error = errorInfo(err);
    if (error.type === 'SyntaxError' && !error.traceback.includes(path.resolve(args.source))) {
      const where = locateSyntaxError(path.resolve(args.source), args.main);
      if (where) error.traceback = `${where}\n${error.traceback}`;
    }
    writeStatus(args.statusFd, { t: 'load_error', error });
    process.exit(LOAD_ERROR_EXIT);
  }
  writeStatus(args.statusFd, {
    t: 'ready',
    pid: process.pid,
    functions: [...functions.keys()],
    load_ms: Math.round((performance.now() - t0) * 1000) / 1000,
    version: process.versions.node,
    ...(step ? { step: describeSpec(step.spec) } : {}),
  });
  new Worker(functions, args, step).serve(args.fd);
}

main();
