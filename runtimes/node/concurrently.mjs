// A Node worker serving several calls at once (`--concurrency N`, N > 1): calls run
// side by side on the event loop, each call's output found through its async context.
// These are methods of the harness's Worker (runtimes/node/harness.mjs), assigned to
// its prototype. Standard library only.

import { performance } from 'node:perf_hooks';
import { Capture } from './capture.mjs';
import { errorInfo, harnessError } from './errors.mjs';
import { FrameDecoder, encode } from './frames.mjs';

const CANCELLED = "the call was cancelled: it passed the script's execution timeout";

// One call among others (concurrency > 1). The function gets a second argument,
// { signal, deadline }: signal is an AbortSignal aborted when the daemon cancels the
// call (past its timeout). The cancel is answered at once; whatever the function
// still does runs on, and its late answer is dropped.
async function callConcurrently(message) {
  const name = message.function;
  const id = message.id ?? null;
  const result = { t: 'result', id };
  const call = {
    result, name, wall0: performance.now(), cpu0: process.cpuUsage(),
    sinks: Capture.sinks(), controller: new AbortController(), answered: false,
  };
  this.inFlight.set(id, call);
  const fn = typeof name === 'string' && this.functions.has(name) ? this.functions.get(name) : null;
  try {
    if (!fn) {
      const known = [...this.functions.keys()].join(', ') || 'none';
      result.error = harnessError('FunctionNotFound',
        `main.js has no function ${JSON.stringify(name)} (has: ${known})`);
    } else {
      const payload = message.payload === undefined ? {} : message.payload;
      const context = { signal: call.controller.signal, deadline: message.deadline };
      const value = await this.als.run(call.sinks, () => fn(payload, context));
      result.value = value === undefined ? null : value;
    }
  } catch (err) {
    result.error = errorInfo(err);
  }
  return this.answer(call);
}

function cancel(id) {
  const call = this.inFlight.get(id);
  if (!call) return null;
  call.controller.abort(new Error(CANCELLED));
  call.result.error = harnessError('Cancelled', CANCELLED);
  return this.answer(call);
}

function answer(call) {
  if (call.answered) return null;
  call.answered = true;
  this.inFlight.delete(call.result.id);
  return this.finish(call.result, call.name, call.wall0, call.cpu0, call.sinks);
}

// Every read that brings calls is acknowledged before any of them runs (see `started`
// in protocol.py), and "before" means in the kernel: a write node could not hand over
// at once (the socket is full) waits in the stream's buffer, so the frames of that
// read, and of the reads after it, run from the ack's write callback, once it left.
function serveConcurrently(sock) {
  const decoder = new FrameDecoder(this.maxFrame);
  const held = []; // frames read while an ack is not in the kernel yet
  let unsent = 0; // acks written whose write callback has not come
  sock.on('data', (chunk) => {
    let messages;
    try {
      messages = decoder.feed(chunk);
    } catch (err) {
      process.stderr.write(`scriptd worker: ${err.message}\n`);
      process.exit(2);
    }
    const ids = messages.filter((m) => m.t === 'call').map((m) => m.id ?? null);
    if (ids.length) {
      if (this.corked) {
        this.corked = false;
        sock.uncork();
      }
      let waited = false; // the callback comes later even when the write went at once
      sock.write(encode({ t: 'started', ids }), () => {
        if (waited && --unsent === 0) this.dispatch(held.splice(0));
      });
      if (sock.writableLength > 0) { // not handed over at once: wait for its callback
        waited = true;
        unsent += 1;
      }
    }
    if (unsent) held.push(...messages);
    else this.dispatch(messages);
  });
  sock.on('end', () => process.exit(0));
  sock.on('error', () => process.exit(0));
}

function dispatch(messages) {
  for (const message of messages) {
    let reply;
    if (message.t === 'call') reply = this.callConcurrently(message);
    else if (message.t === 'cancel') reply = this.cancel(message.id ?? null);
    else reply = this.handle(message);
    Promise.resolve(reply).then((frame) => this.write(frame));
  }
}

// Answers are written back to back: the socket is corked until the loop's next turn,
// so the answers of one turn leave in one write.
function write(frame) {
  if (!frame) return;
  if (!this.corked) {
    this.corked = true;
    this.sock.cork();
    setImmediate(() => {
      this.corked = false;
      this.sock.uncork();
    });
  }
  this.sock.write(frame);
}

export const concurrentMethods = {
  callConcurrently, cancel, answer, serveConcurrently, dispatch, write,
};
