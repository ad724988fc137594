'use strict';

// Sizes such as `requestDataLimit: '10mb'`, as the `bytes` package (used by
// js-host 0.11 through body-parser) reads them: 1 kb = 1024 b.
const UNITS = { b: 1, kb: 1 << 10, mb: 1 << 20, gb: 1 << 30, tb: 2 ** 40, pb: 2 ** 50 };
const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|pb)?\s*$/i;

function parseBytes(value) {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.floor(value) : null;
  }
  if (typeof value !== 'string') return null;
  const match = PATTERN.exec(value);
  if (!match) return null;
  const unit = (match[2] || 'b').toLowerCase();
  return Math.floor(parseFloat(match[1]) * UNITS[unit]);
}

module.exports = { parseBytes };
