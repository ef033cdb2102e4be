// The web server recipes of README.md ("Recipes"), kept in e2e/recipes/ and
// run by the gateway tests exactly as written: only the example addresses
// are replaced by the ones of the run.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const RECIPES_DIR = path.join(E2E_DIR, 'recipes');
export const README = path.resolve(E2E_DIR, '..', 'README.md');

/** The example addresses the recipes (and the README) use. */
export const EXAMPLE = {
  gate: '127.0.0.1:4180',
  app: '127.0.0.1:8000',
  nginxListen: 'listen 80;',
  caddySite: 'app.example.com {',
};

/** The recipe's text, as README.md shows it. */
export function recipeText(file) {
  return fs.readFileSync(path.join(RECIPES_DIR, file), 'utf8');
}

/**
 * The recipe with the example addresses replaced: `gate` (oidc-gate's
 * host:port), `app` (the upstream's host:port, if the recipe has one) and the
 * web server's own port. A recipe that lost one of the example addresses
 * fails here rather than silently running against the wrong place.
 */
export function recipeFor(file, { gate, app, port }) {
  let text = recipeText(file);
  const swap = (from, to) => {
    if (!text.includes(from)) throw new Error(`recipe ${file} does not contain ${JSON.stringify(from)}`);
    text = text.split(from).join(to);
  };
  swap(EXAMPLE.gate, gate);
  if (app) swap(EXAMPLE.app, app);
  if (file.endsWith('.Caddyfile')) swap(EXAMPLE.caddySite, `http://127.0.0.1:${port} {`);
  else swap(EXAMPLE.nginxListen, `listen 127.0.0.1:${port};`);
  return text;
}

/** Throws unless README.md contains the recipe verbatim. */
export function expectReadmeShows(file) {
  if (!fs.readFileSync(README, 'utf8').includes(recipeText(file))) {
    throw new Error(`README.md does not show e2e/recipes/${file} verbatim (update one or the other)`);
  }
}
