// Self-check of the gateway harness, independent of oidc-gate: the Node
// upstream echoes requests and WebSockets, Debian's nginx and caddy start
// with generated configurations, proxy to it and stop, and every recipe of
// the README is accepted by the server it is for.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startUpstream, headerValues } from '../lib/upstream.js';
import { startNginx, startCaddy } from '../lib/webservers.js';
import { recipeFor } from '../lib/recipes.js';
import { freePort } from '../lib/ports.js';
import { rawRequest, wsEcho } from '../lib/http.js';
import { TEST_TIMEOUT_MS } from '../lib/timeouts.js';

let upstream;
before(async () => { upstream = await startUpstream(); });
after(async () => { await upstream?.close(); });

/** The port no longer accepts connections. */
async function closed(url) {
  await assert.rejects(rawRequest(url, '/'), (err) => err.code === 'ECONNREFUSED');
}

test('harness: the upstream echoes method, path, query and every header; serves a page; echoes WebSockets', { timeout: TEST_TIMEOUT_MS }, async () => {
  const res = await rawRequest(upstream.url, '/a/b?x=1&y=two', {
    method: 'DELETE',
    headers: [['X-Dup', 'one'], ['x-dup', 'two'], ['Accept', 'application/json']],
  });
  assert.equal(res.status, 200);
  const seen = res.json();
  assert.equal(seen.method, 'DELETE');
  assert.equal(seen.path, '/a/b');
  assert.deepEqual(seen.query, { x: '1', y: 'two' });
  assert.deepEqual(headerValues(seen, 'x-dup'), ['one', 'two']);

  const page = await rawRequest(upstream.url, '/p', { headers: [['Accept', 'text/html']] });
  assert.match(page.headers['content-type'], /text\/html/);
  assert.match(page.body, /Upstream app/);

  const { handshake, echo } = await wsEcho(`ws://${upstream.host}/ws?q=1`, { headers: { 'X-Probe': 'yes' } });
  assert.equal(handshake.path, '/ws');
  assert.deepEqual(headerValues(handshake, 'x-probe'), ['yes']);
  assert.equal(echo, 'ping');
});

test('harness: nginx starts with a generated config, proxies HTTP and WebSockets to the upstream, stops', { timeout: TEST_TIMEOUT_MS }, async () => {
  const port = await freePort();
  const nginx = await startNginx({
    name: 'harness-nginx',
    port,
    httpConf: `
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Via-Nginx yes;
            proxy_pass ${upstream.url};
        }
    }`,
  });
  try {
    const seen = (await rawRequest(nginx.url, '/through?x=1')).json();
    assert.equal(seen.path, '/through');
    assert.deepEqual(headerValues(seen, 'x-via-nginx'), ['yes']);
    const { handshake, echo } = await wsEcho(`ws://127.0.0.1:${port}/ws`);
    assert.deepEqual(headerValues(handshake, 'x-via-nginx'), ['yes']);
    assert.equal(echo, 'ping');
  } finally {
    await nginx.stop();
  }
  await closed(nginx.url);
});

test('harness: caddy starts with a generated Caddyfile (admin off, no HTTPS), proxies to the upstream, stops', { timeout: TEST_TIMEOUT_MS }, async () => {
  const port = await freePort();
  const caddy = await startCaddy({
    name: 'harness-caddy',
    port,
    site: `http://127.0.0.1:${port} {\n\treverse_proxy ${upstream.host} {\n\t\theader_up X-Via-Caddy yes\n\t}\n}`,
  });
  try {
    const seen = (await rawRequest(caddy.url, '/through?x=1')).json();
    assert.equal(seen.path, '/through');
    assert.deepEqual(headerValues(seen, 'x-via-caddy'), ['yes']);
    const { echo } = await wsEcho(`ws://127.0.0.1:${port}/ws`);
    assert.equal(echo, 'ping');
  } finally {
    await caddy.stop();
  }
  await closed(caddy.url);
});

test('harness: nginx and caddy accept every recipe of the README as written', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Nothing needs to listen at the gate's address for the servers to start.
  const gate = `127.0.0.1:${await freePort()}`;
  for (const file of ['nginx-auth-request.conf', 'nginx-reverse-proxy.conf']) {
    const port = await freePort();
    const nginx = await startNginx({ name: `harness-${file.replace(/\.conf$/, '')}`, port, httpConf: recipeFor(file, { gate, app: upstream.host, port }) });
    await nginx.stop();
  }
  const port = await freePort();
  const caddy = await startCaddy({
    name: 'harness-caddy-forward-auth',
    port,
    site: recipeFor('caddy-forward-auth.Caddyfile', { gate, app: upstream.host, port }),
  });
  await caddy.stop();
});
