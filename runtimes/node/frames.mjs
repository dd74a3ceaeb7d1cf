// Frames on the worker socket: a 4-byte big-endian length, then that many bytes
// of JSON (runtimes/protocol.py). Standard library only.

export function encode(message) {
  return frameOfText(JSON.stringify(message));
}

// One frame of JSON text, header and body written into one buffer (no copy, no concat).
export function frameOfText(text, size = Buffer.byteLength(text, 'utf8')) {
  const frame = Buffer.allocUnsafe(4 + size);
  frame.writeUInt32BE(size, 0);
  frame.write(text, 4, size, 'utf8');
  return frame;
}

export class FrameDecoder {
  // parse: JSON.parse, or parseExact for a step worker (typed numbers keep their digits).
  constructor(maxFrame, parse = JSON.parse) {
    this.maxFrame = maxFrame;
    this.parse = parse;
    this.buf = Buffer.alloc(0);
  }

  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out = [];
    while (this.buf.length >= 4) {
      const size = this.buf.readUInt32BE(0);
      if (size < 2 || size > this.maxFrame) {
        throw new Error(`frame of ${size} bytes (allowed 2..${this.maxFrame})`);
      }
      if (this.buf.length < 4 + size) break;
      const message = this.parse(this.buf.subarray(4, 4 + size).toString('utf8'));
      this.buf = this.buf.subarray(4 + size);
      if (message === null || typeof message !== 'object' || typeof message.t !== 'string') {
        throw new Error("frame is not a JSON object with a string 't'");
      }
      out.push(message);
    }
    return out;
  }
}
