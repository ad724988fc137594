'use strict';

// Private directories and the files in them, as js_host/private_dir.py does
// them for the Python client (same rules, same error messages), applied to
// paths because Node has no openat():
// - the realpath of the directory's parent, then every component checked with
//   lstat: no link, owned by root or by us, not writable by others unless
//   sticky (like /tmp, where others cannot rename or remove our entries);
// - the directory itself made with mode 0700 and checked with lstat: no link,
//   ours, no group/other permission bits.
// Once every folder on the way is one that no other user can change, the
// checked path keeps naming the same directory. Files are opened with
// O_NOFOLLOW (new ones O_CREAT|O_EXCL under random names), then fstat-checked:
// a regular file of ours.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

class RuntimeDirError extends Error {}

/** Python's repr() of a plain path, so that both sides' messages read the same. */
function quote(p) {
  return p.includes("'") && !p.includes('"') ? `"${p}"` : `'${p}'`;
}

/** Python's stat.filemode(): "drwxr-xr-x", "lrwxrwxrwx"... */
function filemode(mode) {
  const S = fs.constants;
  const types = [[S.S_IFLNK, 'l'], [S.S_IFREG, '-'], [S.S_IFDIR, 'd'], [S.S_IFCHR, 'c'],
    [S.S_IFBLK, 'b'], [S.S_IFIFO, 'p'], [S.S_IFSOCK, 's']];
  const type = (types.find(([bits]) => (mode & S.S_IFMT) === bits) || [0, '?'])[1];
  const rwx = (shift, special, lower, upper) => {
    const bits = (mode >> shift) & 7;
    const x = bits & 1 ? (mode & special ? lower : 'x') : mode & special ? upper : '-';
    return `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${x}`;
  };
  return type + rwx(6, 0o4000, 's', 'S') + rwx(3, 0o2000, 's', 'S') + rwx(0, 0o1000, 't', 'T');
}

function lstatOrNull(p) {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

/** The realpath of `p`, or of its longest existing prefix followed by the rest. */
function realpathOfExisting(p) {
  const rest = [];
  let current = p;
  for (;;) {
    try {
      return path.join(fs.realpathSync(current), ...rest.reverse());
    } catch (err) {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw err;
    }
    const parent = path.dirname(current);
    if (parent === current) return p;
    rest.push(path.basename(current));
    current = parent;
  }
}

// How often a folder that vanishes between mkdir and lstat is made again before
// giving up: a name someone else keeps removing is theirs to fight over, not ours.
const CREATE_ATTEMPTS = 5;

/** With `create`, make `p` (mode 0700) if missing; its lstat. ENOENT without `create`. */
function makeDir(p, create, { what, setting }, shown = p) {
  for (let attempt = 0; attempt < (create ? CREATE_ATTEMPTS : 1); attempt++) {
    if (create) {
      try {
        fs.mkdirSync(p, { mode: 0o700 });
      } catch (err) {
        if (err.code !== 'EEXIST') throw err;
      }
    }
    const stat = lstatOrNull(p);
    if (stat !== null) return stat;
  }
  if (!create) throw Object.assign(new Error(`ENOENT: no such directory, '${shown}'`), { code: 'ENOENT' });
  throw new RuntimeDirError(
    `The ${what} ${quote(shown)} keeps disappearing while js-host creates it (another user may be ` +
      `removing it). Set ${setting} to a directory under a folder of your own.`,
  );
}

function notADirectory(what, p, setting, stat) {
  const kind = stat.isSymbolicLink() ? ' a symbolic link' : ` not a directory (${filemode(stat.mode)})`;
  return new RuntimeDirError(
    `The ${what} ${quote(p)} cannot be used: it is${kind}, which js-host never follows ` +
      `(another user may have made it). Remove it, or set ${setting} to a directory of your own.`,
  );
}

function checkAncestor(stat, p, { what, setting, target }) {
  const mode = stat.mode & 0o7777;
  const uid = process.getuid();
  const ownerOk = stat.uid === 0 || stat.uid === uid;
  if (ownerOk && ((mode & 0o022) === 0 || (mode & 0o1000) !== 0)) return;
  const reason = ownerOk
    ? `can be changed by other users (mode ${mode.toString(8)}, not sticky)`
    : `belongs to uid ${stat.uid}`;
  throw new RuntimeDirError(
    `The ${what} ${quote(target)} is not private: the folder ${quote(p)} above it ${reason}, so another ` +
      `user could replace what it holds. Set ${setting} to a directory under a folder of your own.`,
  );
}

/**
 * Check (and with `create`, make, mode 0700, parents included) the private
 * directory `dir`; returns its absolute path. Throws RuntimeDirError naming the
 * unsafe component and `setting` (what the user can set instead).
 */
function ensurePrivateDir(dir, { what, setting, create = true }) {
  const target = path.resolve(dir);
  const realParent = realpathOfExisting(path.dirname(target));
  const leaf = path.join(realParent, path.basename(target));
  const opts = { what, setting, target };
  let current = '/';
  const parts = realParent.split('/').filter(Boolean);
  for (const part of parts) {
    checkAncestor(fs.lstatSync(current), current, opts);
    const child = path.join(current, part);
    const stat = makeDir(child, create, opts);
    // A link here appeared after realpath(): someone is swapping it.
    if (!stat.isDirectory()) throw notADirectory(what, child, setting, stat);
    current = child;
  }
  checkAncestor(fs.lstatSync(current), current, opts);
  const stat = makeDir(leaf, create, opts, target);
  if (!stat.isDirectory()) throw notADirectory(what, target, setting, stat);
  const uid = process.getuid();
  if (stat.uid !== uid) {
    throw new RuntimeDirError(
      `The ${what} ${quote(target)} belongs to uid ${stat.uid}, not to you (uid ${uid}). ` +
        `Remove it, or set ${setting} to a directory of your own.`,
    );
  }
  const mode = stat.mode & 0o7777;
  if ((mode & 0o077) !== 0) {
    throw new RuntimeDirError(
      `The ${what} ${quote(target)} is accessible by other users (mode ${mode.toString(8)}). ` +
        `Run \`chmod 700 ${target}\`, remove it, or set ${setting} to a directory of your own.`,
    );
  }
  return target;
}

/**
 * Raise RuntimeDirError unless `fd` is a regular file of ours (with `private`,
 * also without group/other bits; with `singleLink`, also not hard-linked
 * elsewhere, where someone else may have linked a file of ours).
 */
function checkFile(fd, file, { private: isPrivate = false, singleLink = false } = {}) {
  const stat = fs.fstatSync(fd);
  const uid = process.getuid();
  if (!stat.isFile()) {
    throw new RuntimeDirError(
      `The file ${quote(file)} cannot be used: it is not a regular file (${filemode(stat.mode)}). Remove it.`,
    );
  }
  if (stat.uid !== uid) {
    throw new RuntimeDirError(`The file ${quote(file)} belongs to uid ${stat.uid}, not to you (uid ${uid}). Remove it.`);
  }
  if (singleLink && stat.nlink !== 1) {
    throw new RuntimeDirError(
      `The file ${quote(file)} cannot be used: it has ${stat.nlink} hard links, ` +
        'so it may be a file of yours linked by another user. Remove it.',
    );
  }
  const mode = stat.mode & 0o7777;
  if (isPrivate && (mode & 0o077) !== 0) {
    throw new RuntimeDirError(
      `The file ${quote(file)} is accessible by other users (mode ${mode.toString(8)}). ` +
        `Run \`chmod 600 ${file}\`, or remove it.`,
    );
  }
  return stat;
}

/**
 * open(2) `file` with `flags` | O_NOFOLLOW (new files mode 0600), then check
 * it (see checkFile); returns the fd. A link is a RuntimeDirError; ENOENT and
 * other errors of open(2) are thrown as they are.
 */
function openChecked(file, flags, check = {}) {
  let fd;
  try {
    // O_NONBLOCK: a FIFO put in the file's place must not hang the open.
    fd = fs.openSync(file, flags | O_NOFOLLOW | O_NONBLOCK, 0o600);
  } catch (err) {
    if (err.code === 'ELOOP') {
      throw new RuntimeDirError(
        `The file ${quote(file)} cannot be used: it is a symbolic link, which js-host never follows ` +
          '(another user may have made it). Remove it.',
      );
    }
    throw err;
  }
  try {
    checkFile(fd, file, check);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/** A file of a private dir: also no group/other bits (like Python's open_private_file). */
function openPrivateFile(file, flags = O_RDONLY) {
  return openChecked(file, flags, { private: true });
}

/** A new file with a random name in `dir` (O_CREAT|O_EXCL|O_NOFOLLOW, 0600): {fd, file}. */
function createTemp(dir, prefix) {
  for (;;) {
    const file = path.join(dir, `${prefix}${crypto.randomBytes(8).toString('hex')}`);
    try {
      return { fd: fs.openSync(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600), file };
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
  }
}

module.exports = {
  RuntimeDirError,
  checkFile,
  createTemp,
  ensurePrivateDir,
  filemode,
  openChecked,
  openPrivateFile,
  quote,
};
