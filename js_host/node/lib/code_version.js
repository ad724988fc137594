'use strict';

// A version of the code a host runs: a digest of the contents of every module
// the process has loaded (the config file and all it required or imported:
// CommonJS and ES modules, see module_files.js), so that caches
// keyed on it (the proxy's, the client's local cache) never answer a call with
// the output of other code. Contents, not mtimes: a restart with unchanged code
// keeps the same version, and so its cache entries.
//
// It is computed once the config is loaded: a module a function first requires
// later, in the middle of a call, is not part of it (require it at the top of
// the config, as is usual, or set the proxy's namespace by hand).

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { moduleFiles } = require('./module_files');

// Hex digits kept: 64 bits, enough to tell versions of one project apart.
const LENGTH = 16;

/**
 * The code version of the files in `files` (by default every module loaded,
 * installed packages included): sha256 over their sorted paths and contents, LENGTH hex digits.
 * A file that cannot be read any more counts by its path alone.
 */
function codeVersion(files = moduleFiles()) {
  const hash = crypto.createHash('sha256');
  for (const file of [...new Set(files)].sort()) {
    hash.update(file);
    hash.update('\0');
    try {
      hash.update(fs.readFileSync(file));
    } catch {
      hash.update('(unreadable)');
    }
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, LENGTH);
}

// js-host's own modules (lib/ and bin/) are not the user's code to watch.
const OWN_DIRS = ['lib', 'bin'].map((name) => path.join(path.dirname(__dirname), name) + path.sep);

/**
 * The user's modules among `files` (by default every module loaded), with
 * their mtimes in ns (strings: exact): {path: mtimeNs}. js-host's own modules
 * are left out, and so are installed packages (node_modules) unless
 * `nodeModules` (the config's `watchNodeModules: true`). A managed
 * host reports them to its manager, so that a development client restarts it
 * when one changes (and knows at once that a host started before an edit runs
 * old code). A file that cannot be stat'ed any more is left out.
 */
function loadedFiles(files = moduleFiles(), { nodeModules = false } = {}) {
  const mtimes = {};
  for (const file of [...new Set(files)].sort()) {
    if (!path.isAbsolute(file) || OWN_DIRS.some((dir) => file.startsWith(dir))) continue;
    if (!nodeModules && file.split(path.sep).includes('node_modules')) continue;
    try {
      mtimes[file] = String(fs.statSync(file, { bigint: true }).mtimeNs);
    } catch {
      // Gone since it was loaded: nothing to compare.
    }
  }
  return mtimes;
}

module.exports = { codeVersion, loadedFiles, LENGTH };
