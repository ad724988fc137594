'use strict';

// The per-user runtime directory and the manager's secret. The Python client
// implements the same rules (js_host/runtime.py), so whichever side starts
// first creates them:
// - dir: $JS_HOST_RUNTIME_DIR, else $XDG_RUNTIME_DIR/js-host, else
//   ${TMPDIR:-/tmp}/js-host-<uid> (not os.tmpdir(): Python's differs); mode 0700.
// - secret: <dir>/manager.secret, 64 lowercase hex chars, mode 0600, created
//   atomically (write a temp file, link() it into place, EEXIST = another
//   process won the race: use theirs). Read back trimmed, as Python's
//   .strip() does, so that a trailing newline added by an editor is accepted.
// - logfiles (managed hosts, --detached copies) are capped when their process
//   starts: over LOGFILE_MAX_BYTES, only the last LOGFILE_KEEP_BYTES are kept.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const SECRET_NAME = 'manager.secret';
const SECRET_PATTERN = /^[0-9a-f]{64}$/;
// The runtime dir is often a small tmpfs ($XDG_RUNTIME_DIR).
const LOGFILE_MAX_BYTES = 1024 * 1024;
const LOGFILE_KEEP_BYTES = 256 * 1024;

class RuntimeDirError extends Error {}

function runtimeDir(env = process.env) {
  if (env.JS_HOST_RUNTIME_DIR) return path.resolve(env.JS_HOST_RUNTIME_DIR);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'js-host');
  const tmp = env.TMPDIR ? env.TMPDIR : '/tmp';
  return path.join(tmp, `js-host-${process.getuid()}`);
}

/** Create the runtime dir if needed and check that only this user can use it. */
function ensureRuntimeDir(env = process.env) {
  const dir = runtimeDir(env);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.statSync(dir);
  if (!stat.isDirectory()) {
    throw new RuntimeDirError(`js-host runtime dir ${dir} is not a directory: remove it`);
  }
  const uid = process.getuid();
  if (stat.uid !== uid) {
    throw new RuntimeDirError(
      `js-host runtime dir ${dir} belongs to uid ${stat.uid}, not to the current user (uid ${uid}): ` +
        'remove it, or set JS_HOST_RUNTIME_DIR to a directory of your own',
    );
  }
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
    throw new RuntimeDirError(
      `js-host runtime dir ${dir} is accessible by other users (mode ${mode}): run \`chmod 700 ${dir}\``,
    );
  }
  return dir;
}

function secretFile(dir = runtimeDir()) {
  return path.join(dir, SECRET_NAME);
}

function readSecret(file) {
  const secret = fs.readFileSync(file, 'utf8').trim();
  if (!SECRET_PATTERN.test(secret)) {
    throw new RuntimeDirError(`js-host secret file ${file} is not 64 hex characters: remove it`);
  }
  return secret;
}

/** The manager secret: read it, or create it atomically. Returns {secret, file}. */
function getOrCreateSecret(dir = ensureRuntimeDir()) {
  const file = secretFile(dir);
  try {
    return { secret: readSecret(file), file };
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  const secret = crypto.randomBytes(32).toString('hex');
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, secret, { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return { secret, file };
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
    return { secret: readSecret(file), file };
  } finally {
    fs.unlinkSync(tmp);
  }
}

/** "<name>-<sha1 prefix>": one stable, readable file name per config path. */
function configSlug(configPath) {
  const base = path.basename(configPath).replace(/\.[cm]?js$/, '').replace(/[^A-Za-z0-9_.-]/g, '_');
  const hash = crypto.createHash('sha1').update(configPath).digest('hex').slice(0, 12);
  return `${base}-${hash}`;
}

/** Logfile of the host that a manager starts for `configPath`. */
function managedHostLogfile(dir, configPath) {
  return path.join(dir, `host-${configSlug(configPath)}.log`);
}

/** Console output of a `--detached` copy: manager-<slug>.log, host-<slug>.detached.log. */
function detachedOutputFile(dir, kind, configPath) {
  const slug = configSlug(configPath);
  return path.join(dir, kind === 'manager' ? `manager-${slug}.log` : `host-${slug}.detached.log`);
}

/**
 * A logfile over `maxBytes` keeps only its last `keepBytes` (from the first
 * whole line in them); returns true if it was cut. Call it before the process
 * that appends to the file starts.
 */
function capLogfile(file, maxBytes = LOGFILE_MAX_BYTES, keepBytes = LOGFILE_KEEP_BYTES) {
  let fd;
  try {
    fd = fs.openSync(file, 'r+');
  } catch (err) {
    if (err.code === 'ENOENT') return false;
    throw err;
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= maxBytes) return false;
    const tail = Buffer.alloc(Math.min(keepBytes, size));
    const length = fs.readSync(fd, tail, 0, tail.length, size - tail.length);
    const newline = tail.indexOf(10);
    const kept = tail.subarray(newline === -1 || newline + 1 >= length ? 0 : newline + 1, length);
    const note = `${new Date().toISOString()} - info: js-host: this logfile was over ${maxBytes} bytes, its beginning was cut\n`;
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, Buffer.concat([Buffer.from(note), kept]), 0, undefined, 0);
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

module.exports = {
  LOGFILE_MAX_BYTES,
  LOGFILE_KEEP_BYTES,
  RuntimeDirError,
  runtimeDir,
  ensureRuntimeDir,
  secretFile,
  getOrCreateSecret,
  managedHostLogfile,
  detachedOutputFile,
  capLogfile,
};
