'use strict';

// The runtime dir and the files in it are never used through a link or when
// another user could change them: the secret, a host's logfile, the output
// file of a `--detached` copy. (tests/system/test_security_runtime.py plays another
// local user for real and checks that Python says the same.)

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, test } = require('node:test');
const { FIXTURES, runCli, startServer, tempRuntimeDir, waitFor } = require('./helpers');
const runtime = require('../lib/runtime');

const HOST_CONFIG = path.join(FIXTURES, 'host.config.js');

/** A file outside the runtime dir that must keep its content and mtime. */
function canary(t) {
  const dir = tempRuntimeDir(t);
  const file = path.join(dir, 'precious');
  fs.writeFileSync(file, 'keep me\n', { mode: 0o600 });
  const old = new Date('2020-01-01T00:00:00Z');
  fs.utimesSync(file, old, old);
  return {
    file,
    assertUntouched() {
      assert.equal(fs.readFileSync(file, 'utf8'), 'keep me\n');
      assert.equal(fs.statSync(file).mtimeMs, old.getTime());
      assert.deepEqual(fs.readdirSync(dir), ['precious']);
    },
  };
}

describe('the runtime dir', () => {
  test('a link in its place is refused, naming the path and the settings', (t) => {
    const shared = tempRuntimeDir(t);
    const target = tempRuntimeDir(t);
    const dir = path.join(shared, `js-host-${process.getuid()}`);
    fs.symlinkSync(target, dir);
    assert.throws(
      () => runtime.getOrCreateSecret(runtime.ensureRuntimeDir({ TMPDIR: shared })),
      (err) =>
        err instanceof runtime.RuntimeDirError &&
        err.message ===
          `The js-host runtime directory '${dir}' cannot be used: it is a symbolic link, which js-host never ` +
            'follows (another user may have made it). Remove it, or set JS_HOST_RUNTIME_DIR (or XDG_RUNTIME_DIR) ' +
            'to a directory of your own.',
    );
    assert.deepEqual(fs.readdirSync(target), []);
  });

  test('a link on the way is resolved once, then every folder is checked', (t) => {
    const base = tempRuntimeDir(t);
    const loose = path.join(base, 'loose');
    fs.mkdirSync(loose);
    fs.chmodSync(loose, 0o777);
    fs.symlinkSync(loose, path.join(base, 'link'));
    assert.throws(
      () => runtime.ensureRuntimeDir({ JS_HOST_RUNTIME_DIR: path.join(base, 'link', 'rt') }),
      new RegExp(`the folder '${loose}' above it can be changed by other users \\(mode 777, not sticky\\)`),
    );
    assert.deepEqual(fs.readdirSync(loose), []);
    // Under a private folder the link is fine: the same directory each time.
    fs.chmodSync(loose, 0o700);
    const dir = runtime.ensureRuntimeDir({ JS_HOST_RUNTIME_DIR: path.join(base, 'link', 'rt') });
    assert.equal(dir, path.join(base, 'link', 'rt'));
    assert.equal(fs.lstatSync(path.join(loose, 'rt')).mode & 0o777, 0o700);
  });

  test('missing parents are made private', (t) => {
    const base = tempRuntimeDir(t);
    const dir = runtime.ensureRuntimeDir({ JS_HOST_RUNTIME_DIR: path.join(base, 'a', 'b', 'rt') });
    for (const folder of [dir, path.dirname(dir), path.dirname(path.dirname(dir))]) {
      assert.equal(fs.lstatSync(folder).mode & 0o777, 0o700);
    }
  });

  test('a file in its place is refused', (t) => {
    const base = tempRuntimeDir(t);
    fs.writeFileSync(path.join(base, 'rt'), '');
    assert.throws(
      () => runtime.ensureRuntimeDir({ JS_HOST_RUNTIME_DIR: path.join(base, 'rt') }),
      /it is not a directory \(-rw-.*\), which js-host never follows .*set JS_HOST_RUNTIME_DIR to/,
    );
  });
});

describe('the secret file', () => {
  test('a link is never followed, nor written through', (t) => {
    const dir = tempRuntimeDir(t);
    const precious = canary(t);
    fs.symlinkSync(precious.file, path.join(dir, 'manager.secret'));
    assert.throws(
      () => runtime.getOrCreateSecret(dir),
      new RegExp(`The file '${dir}/manager.secret' cannot be used: it is a symbolic link`),
    );
    precious.assertUntouched();
    // A manager refuses to start: one line naming the file.
    const result = runCli([path.join(FIXTURES, 'manager.config.js'), '--manager', '--json', '-p', '0'], { runtimeDir: dir });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^js-host: The file '.*manager\.secret' cannot be used: it is a symbolic link.*Remove it\.\n$/);
    precious.assertUntouched();
  });

  test('a secret that others can read is refused', (t) => {
    const dir = tempRuntimeDir(t);
    fs.writeFileSync(path.join(dir, 'manager.secret'), 'ab'.repeat(32), { mode: 0o644 });
    fs.chmodSync(path.join(dir, 'manager.secret'), 0o644);
    assert.throws(() => runtime.getOrCreateSecret(dir), /is accessible by other users \(mode 644\)\. Run `chmod 600 /);
  });

  test('a secret that is no regular file is refused', (t) => {
    const dir = tempRuntimeDir(t);
    fs.mkdirSync(path.join(dir, 'manager.secret'));
    assert.throws(() => runtime.getOrCreateSecret(dir), /cannot be used: it is not a regular file \(d/);
  });

  test('the temporary file has a random hidden name and is gone after', (t) => {
    const dir = tempRuntimeDir(t);
    runtime.getOrCreateSecret(dir);
    assert.deepEqual(fs.readdirSync(dir), ['manager.secret']);
    assert.equal(fs.statSync(path.join(dir, 'manager.secret')).mode & 0o777, 0o600);
  });
});

describe('logfiles', () => {
  test('a host logfile in the runtime dir that is a link: a one-line error, nothing written', (t) => {
    const dir = tempRuntimeDir(t);
    const precious = canary(t);
    const logfile = path.join(dir, 'host-x.log');
    fs.symlinkSync(precious.file, logfile);
    const result = runCli([HOST_CONFIG, '--json', '-p', '0', '--logfile', logfile], { runtimeDir: dir });
    assert.equal(result.status, 1);
    assert.equal(
      result.stderr,
      `js-host: The file '${logfile}' cannot be used: it is a symbolic link, which js-host never follows ` +
        '(another user may have made it). Remove it.\n',
    );
    precious.assertUntouched();
  });

  test('a logfile in a runtime dir that is not private is refused', (t) => {
    const dir = tempRuntimeDir(t);
    fs.chmodSync(dir, 0o755);
    const result = runCli([HOST_CONFIG, '--json', '-p', '0', '--logfile', path.join(dir, 'host-x.log')], {
      runtimeDir: dir,
    });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^js-host: The js-host runtime directory '.*' is accessible by other users \(mode 755\)/);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  test('a --logfile of the user elsewhere: used, but never through a link at its last component', async (t) => {
    const elsewhere = tempRuntimeDir(t);
    fs.chmodSync(elsewhere, 0o755); // not private: the user chose it
    const precious = canary(t);
    const link = path.join(elsewhere, 'link.log');
    fs.symlinkSync(precious.file, link);
    const refused = runCli([HOST_CONFIG, '--json', '-p', '0', '--logfile', link], { runtimeDir: tempRuntimeDir(t) });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^js-host: The file '.*link\.log' cannot be used: it is a symbolic link/);
    precious.assertUntouched();

    // A hard link to a file of ours could have been made by someone else: refused too.
    const hard = path.join(elsewhere, 'hard.log');
    fs.linkSync(precious.file, hard);
    const refusedHard = runCli([HOST_CONFIG, '--json', '-p', '0', '--logfile', hard], { runtimeDir: tempRuntimeDir(t) });
    assert.equal(refusedHard.status, 1);
    assert.match(refusedHard.stderr, /cannot be used: it has 2 hard links/);
    fs.unlinkSync(hard);
    precious.assertUntouched();

    const logfile = path.join(elsewhere, 'mine.log');
    fs.writeFileSync(logfile, 'before\n');
    const host = await startServer(t, HOST_CONFIG, ['--logfile', logfile], { runtimeDir: tempRuntimeDir(t) });
    await waitFor(() => fs.readFileSync(logfile, 'utf8').includes('Host listening at'), 5000, 'the log line');
    assert.ok(fs.readFileSync(logfile, 'utf8').startsWith('before\n'));
    host.kill();
    await host.exited;
  });

  test('a new logfile is created 0600', async (t) => {
    const dir = tempRuntimeDir(t);
    const logfile = path.join(dir, 'host-new.log');
    const host = await startServer(t, HOST_CONFIG, ['--logfile', logfile], { runtimeDir: dir });
    assert.equal(fs.lstatSync(logfile).mode & 0o777, 0o600);
    host.kill();
    await host.exited;
  });

  test('the output file of --detached that is a link: refused, nothing written, nothing started', (t) => {
    const dir = tempRuntimeDir(t);
    const precious = canary(t);
    const config = path.join(dir, 'detached.config.js');
    fs.copyFileSync(HOST_CONFIG, config);
    const output = runtime.detachedOutputFile(dir, 'host', config);
    fs.symlinkSync(precious.file, output);
    const result = runCli([config, '--detached', '-p', '0'], { runtimeDir: dir });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^js-host: The file '.*\.detached\.log' cannot be used: it is a symbolic link/);
    assert.equal(result.stdout, '');
    precious.assertUntouched();
  });

  test('capLogfile does not follow a link', (t) => {
    const dir = tempRuntimeDir(t);
    const big = path.join(os.tmpdir(), `js-host-big-${process.pid}`);
    fs.writeFileSync(big, 'x\n'.repeat(1000));
    t.after(() => fs.rmSync(big, { force: true }));
    fs.symlinkSync(big, path.join(dir, 'host.log'));
    assert.throws(() => runtime.capLogfile(path.join(dir, 'host.log'), 100, 10), /symbolic link/);
    assert.equal(fs.statSync(big).size, 2000);
  });
});
