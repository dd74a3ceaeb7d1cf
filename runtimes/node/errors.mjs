// The error of a call or of loading main as the daemon shows it: type, message,
// and the stack without the harness's and node's own frames.
// Standard library only.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Every file of the harness lives in this folder: its frames are the machinery.
const HARNESS_DIR = path.dirname(fileURLToPath(import.meta.url));
const HARNESS_URL = pathToFileURL(HARNESS_DIR).href;

function isMachinery(line) {
  return line.includes(HARNESS_DIR) || line.includes(HARNESS_URL)
    || /\(node:|at node:|\(<anonymous>\)/.test(line);
}

// The stack without harness and node-internal frames; header lines (message,
// the code excerpt of a SyntaxError, "Require stack") are kept.
function userStack(stack) {
  if (typeof stack !== 'string') return '';
  return stack.split('\n')
    .filter((line) => !(line.startsWith('    at ') && isMachinery(line)))
    .join('\n');
}

const ERROR_TEXT_MAX = 64 * 1024;

// Error texts stay small: a stack keeps its end, a message its start.
function cap(text, tail = false) {
  if (text.length <= ERROR_TEXT_MAX) return text;
  const cut = `[${text.length - ERROR_TEXT_MAX} characters cut]`;
  return tail ? `${cut}\n${text.slice(-ERROR_TEXT_MAX)}` : text.slice(0, ERROR_TEXT_MAX) + cut;
}

export function errorInfo(err) {
  if (err !== null && typeof err === 'object' && 'message' in err) {
    const info = {
      type: String(err.name || err.constructor?.name || 'Error'),
      message: cap(String(err.message)),
      traceback: cap(userStack(err.stack), true),
    };
    if (typeof err.code === 'string') info.code = err.code;
    return info;
  }
  return { type: 'Error', message: cap(`non-error value thrown: ${String(err)}`), traceback: '' };
}

// An ES module that fails to parse gives a SyntaxError without file or line
// (node prints them only when it dies of it). Find the file with `node --check`,
// main first: this runs only on the way to a load error.
export function locateSyntaxError(source, main) {
  const files = [path.join(source, main)];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (files.length >= 50 || entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.m?js$/.test(entry.name) && !files.includes(full)) files.push(full);
    }
  };
  try {
    walk(source);
  } catch {
    // an unreadable folder: check what we found
  }
  for (const file of files) {
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 5000 });
    if (check.status !== 0 && check.stderr) {
      const lines = check.stderr.split('\n');
      const end = lines.findIndex((line) => line.startsWith('SyntaxError'));
      return lines.slice(0, end < 0 ? lines.length : end).join('\n').trimEnd();
    }
  }
  return null;
}

export const harnessError = (type, message) => ({ type, message, traceback: '' });
