// Frames on the worker socket: a 4-byte big-endian length, then that many bytes
// of JSON (runtimes/protocol.py). Standard library only.

export function encode(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
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

export function frameOf(body) {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}
