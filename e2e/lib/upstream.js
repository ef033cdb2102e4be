// The app behind the gateway, in another language than oidc-gate (Node): it
// answers every request with what it received (method, path, query, headers)
// as JSON, or as an HTML page for browser navigations, and echoes WebSocket
// messages. It remembers every request, so a test can prove what did (not)
// reach it.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** What the upstream saw of one request. */
function describe(req) {
  const url = new URL(req.url, 'http://upstream.invalid');
  // Header pairs as received (names lower-cased), duplicates kept: node's
  // req.headers would merge or drop repeated headers and hide a smuggled copy.
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
  }
  return {
    method: req.method,
    // The request target exactly as sent (no normalisation), and its parts.
    target: req.url,
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    headers,
  };
}

/**
 * The page for a browser: the headers as a table (cookie values hidden, so
 * screenshots show no session ids) and, for the tests, everything as JSON in
 * #echo.
 */
function page(seen) {
  const rows = seen.headers.map(([k, v]) => {
    const shown = k === 'cookie' ? v.split(/;\s*/).map((c) => `${c.split('=')[0]}=…`).join('; ') : v;
    return `<tr><th>${esc(k)}</th><td>${esc(shown)}</td></tr>`;
  }).join('');
  const json = JSON.stringify(seen).replace(/</g, '\\u003c');
  return `<!DOCTYPE html><html><head><title>Upstream app</title>
<style>body{font-family:sans-serif}th{text-align:left;padding-right:1em}td,th{font:13px monospace}</style></head>
<body><h1>Upstream app</h1><p>You reached the protected app: <code>${esc(seen.method)} ${esc(seen.target)}</code></p>
<table>${rows}</table><script type="application/json" id="echo">${json}</script></body></html>`;
}

/** All values of header `name` (lower case) in a described request. */
export function headerValues(seen, name) {
  return seen.headers.filter(([k]) => k === name).map(([, v]) => v);
}

/** Start the upstream on 127.0.0.1, a free port. */
export async function startUpstream() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const seen = describe(req);
    requests.push(seen);
    req.resume();
    req.on('end', () => {
      const html = /text\/html/.test(req.headers.accept || '');
      if (html) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(page(seen));
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(seen));
      }
    });
  });

  // WebSocket echo on any path: the first message is what the handshake
  // request carried (so tests see the identity headers of the upgrade too),
  // then every message comes back as sent.
  const wss = new WebSocketServer({ noServer: true });
  const wsErrors = [];
  server.on('upgrade', (req, socket, head) => {
    const seen = describe(req);
    requests.push(seen);
    wss.handleUpgrade(req, socket, head, (ws) => {
      // A proxy that tears the tunnel down badly (caddy, when it stops,
      // writes an unmasked close frame) must not crash the test process.
      ws.on('error', (err) => { wsErrors.push(err.message); });
      ws.send(JSON.stringify({ handshake: seen }));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });

  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    /** Every request received so far, oldest first. */
    requests,
    /** Errors on WebSocket connections (protocol violations by whoever is in between). */
    wsErrors,
    /** Requests received for `path` (exact pathname as the upstream parsed it). */
    seenAt: (path) => requests.filter((r) => r.path === path),
    async close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
