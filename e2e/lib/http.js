// HTTP requests the way a hostile or scripted client sends them: the request
// target byte for byte (no dot-segment or percent-encoding clean-up, unlike
// fetch and the browser), header names in any case, repeated headers kept,
// redirects not followed. And a WebSocket client.
import http from 'node:http';
import WebSocket from 'ws';

/**
 * @param {string} base   origin, e.g. http://127.0.0.1:8080
 * @param {string} target request target as sent, e.g. /public/../admin
 * @param {object} [opts]
 * @param {string} [opts.method]
 * @param {Array<[string,string]>} [opts.headers] sent in this order, duplicates kept
 * @returns {Promise<{status:number, headers:Record<string,string|string[]>, body:string, json:() => any}>}
 */
export function rawRequest(base, target, { method = 'GET', headers = [] } = {}) {
  const { hostname, port, host } = new URL(base);
  const flat = [];
  if (!headers.some(([k]) => k.toLowerCase() === 'host')) flat.push('Host', host);
  for (const [k, v] of headers) flat.push(k, v);
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname, port, method, path: target, headers: flat, setHost: false, agent: false, timeout: 10_000,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({
        status: res.statusCode,
        headers: res.headers,
        body,
        json() {
          try { return JSON.parse(body); } catch { throw new Error(`not JSON (HTTP ${res.statusCode}): ${body.slice(0, 300)}`); }
        },
      }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within 10 s: ${method} ${base}${target}`)));
    req.on('error', reject);
    req.end();
  });
}

/** The Cookie header a browser context would send to `url`. */
export async function cookieHeader(context, url) {
  return (await context.cookies(url)).map((c) => `${c.name}=${c.value}`).join('; ');
}

/**
 * Open a WebSocket, read the upstream's first message (the handshake it saw),
 * send `message` and read the echo. Rejects with the HTTP status when the
 * upgrade is refused.
 */
export function wsEcho(url, { headers = {}, message = 'ping' } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, handshakeTimeout: 10_000 });
    const got = [];
    ws.on('unexpected-response', (req, res) => {
      const err = new Error(`WebSocket upgrade refused: HTTP ${res.statusCode}`);
      err.status = res.statusCode;
      err.location = res.headers.location;
      res.resume();
      ws.terminate();
      reject(err);
    });
    ws.on('error', reject);
    ws.on('message', (data) => {
      got.push(data.toString());
      if (got.length === 1) ws.send(message);
      else ws.close();
    });
    // Settled once the closing handshake is done, so nothing is left open.
    ws.on('close', () => {
      if (got.length < 2) reject(new Error(`WebSocket closed after ${got.length} message(s)`));
      else resolve({ handshake: JSON.parse(got[0]).handshake, echo: got[1] });
    });
  });
}
