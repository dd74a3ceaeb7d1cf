// Output capture: a call's writes to process.stdout / process.stderr, kept up to
// --max-output bytes each, then a marker saying how much more was dropped.
// Standard library only.

const MARKER = '\n[output truncated: {dropped} more bytes not shown]\n';

// With calls running concurrently (`als` given), each call's writes go to its own
// sinks, found through the async context the write runs in.
export class Capture {
  constructor(limit, als = null) {
    this.limit = limit;
    this.current = null;
    this.als = als;
    for (const [name, stream] of [['stdout', process.stdout], ['stderr', process.stderr]]) {
      const original = stream.write.bind(stream);
      stream.write = (chunk, encoding, callback) => {
        const sinks = this.als ? this.als.getStore() : this.current;
        if (!sinks) return original(chunk, encoding, callback);
        this.take(sinks[name], chunk, encoding);
        const done = typeof encoding === 'function' ? encoding : callback;
        if (typeof done === 'function') process.nextTick(done);
        return true;
      };
    }
  }

  take(sink, chunk, encoding) {
    const data = typeof chunk === 'string'
      ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8')
      : Buffer.from(chunk);
    const room = Math.max(0, this.limit - sink.kept);
    if (room > 0) sink.parts.push(data.subarray(0, room));
    sink.kept += Math.min(room, data.length);
    sink.dropped += Math.max(0, data.length - room);
  }

  static sinks() {
    const sink = () => ({ parts: [], kept: 0, dropped: 0 });
    return { stdout: sink(), stderr: sink() };
  }

  start() {
    this.current = Capture.sinks();
  }

  stop(sinks = null) {
    const { stdout, stderr } = sinks || this.current;
    if (!sinks) this.current = null;
    const text = (s) => Buffer.concat(s.parts).toString('utf8')
      + (s.dropped ? MARKER.replace('{dropped}', String(s.dropped)) : '');
    return { stdout: text(stdout), stderr: text(stderr), truncated: !!(stdout.dropped || stderr.dropped) };
  }
}
