'use strict';

// The per-user runtime directory and the manager's secret. The Python client
// implements the same rules (js_host/runtime.py, js_host/private_dir.py), with
// the same error messages, so whichever side starts first creates them:
// - dir: $JS_HOST_RUNTIME_DIR, else $XDG_RUNTIME_DIR/js-host, else
//   ${TMPDIR:-/tmp}/js-host-<uid> (not os.tmpdir(): Python's differs). There is
//   no fallback when it is unusable: every process of the user must find the
//   same one, so the error names the path and the setting to change.
// - it is a private dir, and files in it are opened without following links
//   (see private_dir.js).
// - secret: <dir>/manager.secret, 64 lowercase hex chars, mode 0600, created
//   atomically (write a temp file, link() it into place, EEXIST = another
//   process won the race: use theirs). Read only if it is a regular file of ours
//   with no group/other bits, trimmed as Python's .strip() does, so that a
//   trailing newline added by an editor is accepted.
// - logfiles (managed hosts, --detached copies) are capped when their process
//   starts: over LOGFILE_MAX_BYTES, only the last LOGFILE_KEEP_BYTES are kept.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const {
  RuntimeDirError,
  checkFile,
  createTemp,
  ensurePrivateDir,
  openChecked,
  openPrivateFile,
  quote,
} = require('./private_dir');

const { O_RDWR, O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = fs.constants;

const SECRET_NAME = 'manager.secret';
const SECRET_PATTERN = /^[0-9a-f]{64}$/;
const RUNTIME_DIR_WHAT = 'js-host runtime directory';
// The runtime dir is often a small tmpfs ($XDG_RUNTIME_DIR).
const LOGFILE_MAX_BYTES = 1024 * 1024;
const LOGFILE_KEEP_BYTES = 256 * 1024;
// Appending to a logfile: created 0600, never through a link.
const LOGFILE_FLAGS = O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW;

function runtimeDir(env = process.env) {
  if (env.JS_HOST_RUNTIME_DIR) return path.resolve(env.JS_HOST_RUNTIME_DIR);
  if (env.XDG_RUNTIME_DIR) return path.resolve(env.XDG_RUNTIME_DIR, 'js-host');
  const tmp = env.TMPDIR ? env.TMPDIR : '/tmp';
  return path.resolve(tmp, `js-host-${process.getuid()}`);
}

/** What the user can set to move the runtime dir (named in error messages). */
function runtimeDirSetting(env = process.env) {
  if (env.JS_HOST_RUNTIME_DIR || env.XDG_RUNTIME_DIR) return 'JS_HOST_RUNTIME_DIR';
  return 'JS_HOST_RUNTIME_DIR (or XDG_RUNTIME_DIR)';
}

/** Create the runtime dir if needed and check that only this user can use it. */
function ensureRuntimeDir(env = process.env) {
  return ensurePrivateDir(runtimeDir(env), { what: RUNTIME_DIR_WHAT, setting: runtimeDirSetting(env) });
}

/** Whether `file` is named directly inside the runtime dir of `env`. */
function inRuntimeDir(file, env = process.env) {
  return path.dirname(path.resolve(file)) === runtimeDir(env);
}

/**
 * Open a logfile for appending (O_APPEND|O_CREAT|O_NOFOLLOW, mode 0600 when
 * new): a logfile named in the runtime dir (a managed host's) is used only
 * once the dir is checked private; any other (a `--logfile` the user gave) is
 * where the user wants it, but never through a link at its last component.
 * Either way only a regular file of ours with one link. Returns the fd.
 */
function openLogfile(file, env = process.env) {
  if (inRuntimeDir(file, env)) ensureRuntimeDir(env);
  return openChecked(file, LOGFILE_FLAGS, { singleLink: true });
}

function secretFile(dir = runtimeDir()) {
  return path.join(dir, SECRET_NAME);
}

function readSecret(file) {
  const fd = openPrivateFile(file);
  let secret;
  try {
    const buffer = Buffer.alloc(4096);
    const length = fs.readSync(fd, buffer, 0, buffer.length, 0);
    secret = buffer.subarray(0, length).toString('latin1').trim();
  } finally {
    fs.closeSync(fd);
  }
  if (!SECRET_PATTERN.test(secret)) {
    throw new RuntimeDirError(
      `The manager secret file ${quote(file)} is malformed (not 64 hex characters): remove it and try again.`,
    );
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
  const { fd, file: tmp } = createTemp(dir, `.${SECRET_NAME}.`);
  try {
    try {
      fs.writeSync(fd, secret);
    } finally {
      fs.closeSync(fd);
    }
    fs.linkSync(tmp, file);
    return { secret, file };
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
    return { secret: readSecret(file), file };
  } finally {
    fs.rmSync(tmp, { force: true });
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
    fd = openChecked(file, O_RDWR, { singleLink: true });
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
  RUNTIME_DIR_WHAT,
  RuntimeDirError,
  runtimeDir,
  runtimeDirSetting,
  ensurePrivateDir,
  ensureRuntimeDir,
  inRuntimeDir,
  checkFile,
  openChecked,
  openPrivateFile,
  openLogfile,
  secretFile,
  getOrCreateSecret,
  managedHostLogfile,
  detachedOutputFile,
  capLogfile,
};
