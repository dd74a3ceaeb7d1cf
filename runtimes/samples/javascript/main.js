/**
 * Sample scriptd project (JavaScript, Node.js).
 *
 * Every function that main.js defines and exports (module.exports, or
 * `export function` in an ES module) becomes callable through the script's
 * endpoint; names starting with "_" are not exposed. The JSON payload of a
 * call is passed as the one argument:
 *
 *   {"function": "greet", "payload": {"name": "Ada"}}  ->  greet({name: "Ada"})
 *
 * Helpers live in other files and are imported with relative paths
 * (./lib/text.js). Environment variables are read from process.env;
 * WORKSPACE_DIR is a read-write folder kept across deployments, UPLOADS_DIR a
 * read-only one.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { slugify, wordCount } = require('./lib/text');

function greet({ name = 'world' } = {}) {
  const greeting = process.env.GREETING || 'Hello';
  return { message: `${greeting}, ${name}!` };
}

function textStats({ text = '', top = 3 } = {}) {
  const counts = wordCount(text);
  const common = Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, top);
  const words = Object.values(counts).reduce((sum, n) => sum + n, 0);
  return { words, distinct: Object.keys(counts).length, top: common };
}

function saveNote({ title, body = '' } = {}) {
  const folder = _notesDir();
  const file = `${slugify(title || '')}.json`;
  fs.writeFileSync(path.join(folder, file), JSON.stringify({ title, body }));
  const notes = fs.readdirSync(folder).filter((f) => f.endsWith('.json')).sort();
  return { saved: file, notes };
}

async function waitAndEcho({ message = '', delayMs = 100 } = {}) {
  // An async function: the runtime awaits the promise it returns.
  await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, 5000)));
  return { echo: message, waitedMs: delayMs };
}

// Leading underscore: a private helper, not exposed.
function _notesDir() {
  const folder = path.join(process.env.WORKSPACE_DIR || '/tmp', 'notes');
  fs.mkdirSync(folder, { recursive: true });
  return folder;
}

module.exports = { greet, textStats, saveNote, waitAndEcho };
