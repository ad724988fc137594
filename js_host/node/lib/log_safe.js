'use strict';

// Client text made safe for a log line or an answer: logSafe(), the one
// function that every log line carrying client text goes through.

// Control characters (C0, DEL, C1) and the line/paragraph separators U+2028/U+2029.
// eslint-disable-next-line no-control-regex
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * Client text (a URL, a batch job's function name) made safe for a log line or an answer:
 * every control character is written as \xNN (\uNNNN for U+2028/2029), so a name holding
 * "\n2026-...Z - error: ..." or ANSI escapes cannot forge or recolour a line of the text log.
 * Every log line that carries client text goes through this one function.
 */
function logSafe(text) {
  const s = String(text);
  UNSAFE_TEXT.lastIndex = 0;
  if (!UNSAFE_TEXT.test(s)) return s;
  return s.replace(UNSAFE_TEXT, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
  });
}

module.exports = { logSafe };
