// Node 20's fetch and its http/https modules ignore HTTP_PROXY and HTTPS_PROXY, so a
// worker whose replica has egress routes them itself, through the replica's relay:
//
// - fetch: an agent of the undici inside Node (reached through Node's internal
//   modules: the worker runs with --expose-internals for this alone) as the global
//   dispatcher, whose connections are CONNECT tunnels through the relay (TLS on top for
//   https), the same tunnels as http and https below; the proxy reads TLS or plain HTTP
//   inside. (undici's own proxy agent drops the proxy's answer to a refused CONNECT
//   and fails with "Request was cancelled"; this way the proxy's message is the cause.)
// - http and https: global agents that open each connection as a CONNECT tunnel
//   through the relay (TLS on top for https). Hosts in NO_PROXY go direct, so a client
//   that talks to the proxy itself (axios reads HTTP_PROXY and sends absolute URLs)
//   still reaches it. NO_PROXY is read as Python's urllib reads it (see bypassed).
//
// A refused CONNECT fails the request with the proxy's message, such as
// "egress: 10.0.0.5 is a private address; allowed: ...".
// Standard library only.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { createRequire } from 'node:module';

function proxyFrom(env) {
  const url = env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy;
  if (!url) return null;
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) || 80 };
}

// One NO_PROXY entry as [name, port or null]: `host`, `host:port`, `[v6]`, `[v6]:port`,
// a bare IPv6 address; leading `*.` and `.` are dropped (a suffix matches anyway).
function noProxyEntry(item) {
  let name = item;
  let port = null;
  const bracketed = /^\[([^\]]*)\](?::(\d+))?$/.exec(item);
  if (bracketed) {
    [, name, port = null] = bracketed;
  } else if ((item.match(/:/g) || []).length === 1) {
    [name, port] = item.split(':');
  }
  return [name.replace(/^\*?\.+/, ''), port === null || port === '' ? null : Number(port)];
}

// Whether host:port goes direct, read as Python's urllib reads NO_PROXY: `*` alone
// bypasses everything; an entry matches the host itself and every name under it
// (`example.com`, `.example.com` and `*.example.com` all match `api.example.com`);
// an entry with a port matches that port only. Names compare case-insensitively.
export function bypassed(env, host, port) {
  const list = (env.NO_PROXY || env.no_proxy || '').split(',');
  const name = String(host).replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  return list.some((raw) => {
    const item = raw.trim().toLowerCase();
    if (!item) return false;
    if (item === '*') return true;
    const [entry, entryPort] = noProxyEntry(item);
    if (!entry || (entryPort !== null && entryPort !== Number(port))) return false;
    return name === entry || name.endsWith(`.${entry}`);
  });
}

// Open a CONNECT tunnel to host:port through the proxy; callback(err, socket).
function tunnel(proxy, host, port, callback) {
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const socket = net.connect(proxy.port, proxy.host);
  let buffer = Buffer.alloc(0);
  let done = false;
  const finish = (err, sock) => {
    if (done) return;
    done = true;
    socket.removeListener('data', onData);
    callback(err, sock);
  };
  const onData = (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    const end = buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = buffer.subarray(0, end).toString('latin1');
    const status = Number(head.split(' ')[1]);
    if (status === 200) {
      const rest = buffer.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      finish(null, socket);
      return;
    }
    const length = Number((/\r\ncontent-length:\s*(\d+)/i.exec(head) || [])[1] || 0);
    const body = buffer.subarray(end + 4);
    if (body.length < length) return; // the proxy's message is still coming
    socket.destroy();
    const message = body.toString('utf8').trim() || `the egress proxy answered ${status}`;
    finish(Object.assign(new Error(message), { code: 'EGRESS_REFUSED', status }));
  };
  socket.on('data', onData);
  socket.once('error', (err) => finish(err));
  socket.once('connect', () => {
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  });
}

function tunnelling(Base, secure, proxy, env) {
  return class extends Base {
    createConnection(options, callback) {
      const host = options.host || options.hostname || 'localhost';
      const port = options.port || (secure ? 443 : 80);
      if (bypassed(env, host, port)) return super.createConnection(options, callback);
      tunnel(proxy, host, port, (err, socket) => {
        if (err) return callback(err);
        if (!secure) return callback(null, socket);
        const servername = options.servername || (net.isIP(host) ? undefined : host);
        return callback(null, tls.connect({ ...options, socket, servername }));
      });
      return undefined;
    }
  };
}

// Connect like undici's connector, (options, callback(err, socket)) once the socket is
// ready to carry requests, but through a tunnel unless NO_PROXY names the host.
function tunnelConnector(proxy, env) {
  return (options, callback) => {
    let called = false;
    const done = (err, socket) => {
      if (called) return;
      called = true;
      callback(err, socket);
    };
    const host = String(options.hostname).replace(/^\[|\]$/g, '');
    const secure = options.protocol === 'https:';
    const port = Number(options.port) || (secure ? 443 : 80);
    const ready = (err, socket) => {
      if (err) return done(err);
      if (!secure) return done(null, socket);
      const servername = options.servername || (net.isIP(host) ? undefined : host);
      const wrapped = tls.connect({ socket, host, servername, ALPNProtocols: ['http/1.1'] });
      wrapped.once('secureConnect', () => done(null, wrapped));
      wrapped.once('error', (error) => done(error));
      return undefined;
    };
    if (!bypassed(env, host, port)) return tunnel(proxy, host, port, ready);
    const socket = net.connect(port, host);
    socket.once('connect', () => ready(null, socket));
    socket.once('error', (error) => done(error));
    return undefined;
  };
}

function routeFetch(proxy, env) {
  let undici;
  try {
    undici = createRequire(import.meta.url)('internal/deps/undici/undici');
  } catch {
    return false; // node without --expose-internals: fetch keeps no route out
  }
  // undici's Agent class is not exported; the default global dispatcher is one.
  const Agent = undici.getGlobalDispatcher().constructor;
  undici.setGlobalDispatcher(new Agent({ connect: tunnelConnector(proxy, env) }));
  return true;
}

// Route fetch, http and https through the proxy named by the environment; returns
// what was routed (nothing when the replica has no egress).
export function routeThroughProxy(env = process.env) {
  const proxy = proxyFrom(env);
  if (!proxy) return { fetch: false, http: false };
  const HttpAgent = tunnelling(http.Agent, false, proxy, env);
  const HttpsAgent = tunnelling(https.Agent, true, proxy, env);
  http.globalAgent = new HttpAgent({ keepAlive: true });
  https.globalAgent = new HttpsAgent({ keepAlive: true });
  return { fetch: routeFetch(proxy, env), http: true };
}
