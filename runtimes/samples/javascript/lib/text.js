'use strict';
// Text helpers. Functions here are not exposed: only main.js's own functions are.

function wordCount(text) {
  const counts = {};
  for (const word of String(text).toLowerCase().match(/[\p{L}\p{N}_']+/gu) || []) {
    counts[word] = (counts[word] || 0) + 1;
  }
  return counts;
}

function slugify(title) {
  const slug = String(title).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return slug || 'note';
}

module.exports = { wordCount, slugify };
