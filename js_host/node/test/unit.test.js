'use strict';

// In-process tests of the small modules: runtime dir and secret, argument
// parsing, sizes, Host header checks, config loading.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const { parseArgs, UsageError } = require('../lib/args');
const { parseBytes } = require('../lib/bytes');
const { codeVersion } = require('../lib/code_version');
const { serializableConfig, withDefaults } = require('../lib/config');
const runtime = require('../lib/runtime');
const { createHostCheck, hostname, isLoopbackAddress } = require('../lib/security');
const { tempRuntimeDir } = require('./helpers');

describe('runtime dir', () => {
  test('JS_HOST_RUNTIME_DIR, then XDG_RUNTIME_DIR/js-host, then ${TMPDIR:-/tmp}/js-host-<uid>', () => {
    const uid = process.getuid();
    assert.equal(runtime.runtimeDir({ JS_HOST_RUNTIME_DIR: '/x/rt', XDG_RUNTIME_DIR: '/run/user/1' }), '/x/rt');
    assert.equal(runtime.runtimeDir({ XDG_RUNTIME_DIR: '/run/user/1', TMPDIR: '/t' }), '/run/user/1/js-host');
    assert.equal(runtime.runtimeDir({ TMPDIR: '/t' }), `/t/js-host-${uid}`);
    assert.equal(runtime.runtimeDir({ TMPDIR: '' }), `/tmp/js-host-${uid}`);
    assert.equal(runtime.runtimeDir({}), `/tmp/js-host-${uid}`);
  });

  test('is created with mode 0700; a dir others can use is refused', (t) => {
    const base = tempRuntimeDir(t);
    const dir = path.join(base, 'a', 'b');
    assert.equal(runtime.ensureRuntimeDir({ JS_HOST_RUNTIME_DIR: dir }), dir);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    fs.chmodSync(dir, 0o770);
    assert.throws(() => runtime.ensureRuntimeDir({ JS_HOST_RUNTIME_DIR: dir }), /chmod 700/);
  });

  test('the secret is created once, atomically, and read back', async (t) => {
    const dir = tempRuntimeDir(t);
    const first = runtime.getOrCreateSecret(dir);
    assert.match(first.secret, /^[0-9a-f]{64}$/);
    assert.equal(first.file, path.join(dir, 'manager.secret'));
    assert.equal(fs.statSync(first.file).mode & 0o777, 0o600);
    assert.deepEqual(runtime.getOrCreateSecret(dir), first);
    assert.deepEqual(fs.readdirSync(dir), ['manager.secret']);
  });

  test('processes racing to create the secret all get the same one', async (t) => {
    const dir = tempRuntimeDir(t);
    const script = `process.stdout.write(require(${JSON.stringify(require.resolve('../lib/runtime'))}).getOrCreateSecret(${JSON.stringify(dir)}).secret)`;
    const outputs = await Promise.all(
      Array.from({ length: 6 }, () => new Promise((resolve) => {
        const child = spawn(process.execPath, ['-e', script]);
        let out = '';
        child.stdout.on('data', (chunk) => (out += chunk));
        child.on('exit', () => resolve(out));
      })),
    );
    assert.equal(new Set(outputs).size, 1);
    assert.match(outputs[0], /^[0-9a-f]{64}$/);
    assert.deepEqual(fs.readdirSync(dir), ['manager.secret']);
  });

  test('a secret file is read trimmed (a trailing newline is fine), as in Python', (t) => {
    const dir = tempRuntimeDir(t);
    // Mode 0600: a secret that others could read is refused.
    fs.writeFileSync(path.join(dir, 'manager.secret'), ` ${'ef'.repeat(32)}\r\n`, { mode: 0o600 });
    assert.equal(runtime.getOrCreateSecret(dir).secret, 'ef'.repeat(32));
  });

  test('an invalid secret file is refused', (t) => {
    const dir = tempRuntimeDir(t);
    fs.writeFileSync(path.join(dir, 'manager.secret'), 'short\n', { mode: 0o600 });
    assert.throws(() => runtime.getOrCreateSecret(dir), /not 64 hex characters/);
  });

  test('a logfile over the limit keeps its last whole lines', (t) => {
    const dir = tempRuntimeDir(t);
    const file = path.join(dir, 'a.log');
    assert.equal(runtime.capLogfile(file, 100, 40), false);
    fs.writeFileSync(file, 'x'.repeat(100));
    assert.equal(runtime.capLogfile(file, 100, 40), false);
    assert.equal(fs.statSync(file).size, 100);
    const lines = Array.from({ length: 20 }, (_, i) => `line ${String(i).padStart(2, '0')}\n`).join('');
    fs.writeFileSync(file, lines);
    assert.equal(runtime.capLogfile(file, 100, 40), true);
    const text = fs.readFileSync(file, 'utf8').split('\n');
    assert.match(text[0], /info: js-host: this logfile was over 100 bytes, its beginning was cut$/);
    assert.deepEqual(text.slice(1), ['line 16', 'line 17', 'line 18', 'line 19', '']);
    assert.equal(runtime.LOGFILE_MAX_BYTES, 1024 * 1024);
  });

  test('one logfile per config path', () => {
    const a = runtime.managedHostLogfile('/rt', '/app/host.config.js');
    assert.match(a, /^\/rt\/host-host\.config-[0-9a-f]{12}\.log$/);
    assert.notEqual(a, runtime.managedHostLogfile('/rt', '/other/host.config.js'));
  });
});

describe('args', () => {
  test('js-host 0.11 options', () => {
    assert.deepEqual(parseArgs(['c.js', '-p', '0', '-j', '-l', 'x.log']), {
      file: 'c.js', port: 0, logfile: 'x.log', workers: undefined, logFormat: undefined, config: false, json: true, manager: false,
      detached: false, version: false, help: false,
    });
    assert.equal(parseArgs(['c.js', '--workers', '3']).workers, 3);
    assert.equal(parseArgs(['c.js', '--log-format', 'json']).logFormat, 'json');
    assert.equal(parseArgs(['c.js', '--log-format=text']).logFormat, 'text');
    assert.equal(parseArgs(['c.js', '--workers=auto']).workers, 'auto');
    const combined = parseArgs(['-mj', '--port=8080', 'c.js', '-dc']);
    assert.equal(combined.port, 8080);
    assert.ok(combined.manager && combined.json && combined.detached && combined.config);
    assert.equal(parseArgs(['c.js', '-p9']).port, 9);
    assert.ok(parseArgs(['-v']).version);
  });

  test('errors', () => {
    assert.throws(() => parseArgs([]), UsageError);
    assert.throws(() => parseArgs(['c.js', '-x']), /Unknown argument: -x/);
    assert.throws(() => parseArgs(['c.js', '-p']), /Missing value/);
    assert.throws(() => parseArgs(['c.js', '-p', '70000']), /0 to 65535/);
    assert.throws(() => parseArgs(['c.js', '-l', 'a', '-l', 'b']), /only be specified once/);
    assert.throws(() => parseArgs(['a.js', 'b.js']), /Unknown argument: b\.js/);
    assert.throws(() => parseArgs(['c.js', '--workers', 'many']), /--workers must be a number of worker processes or "auto"/);
    assert.throws(() => parseArgs(['c.js', '--log-format', 'xml']), /--log-format must be "text" or "json", not "xml"/);
  });
});

test('sizes', () => {
  assert.equal(parseBytes('10mb'), 10 * 1024 * 1024);
  assert.equal(parseBytes('100KB'), 102400);
  assert.equal(parseBytes('1.5kb'), 1536);
  assert.equal(parseBytes('12'), 12);
  assert.equal(parseBytes(500), 500);
  assert.equal(parseBytes('lots'), null);
  assert.equal(parseBytes(-1), null);
});

describe('security', () => {
  test('loopback addresses', () => {
    for (const address of ['127.0.0.1', '127.5.6.7', 'localhost', '::1']) assert.ok(isLoopbackAddress(address), address);
    for (const address of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1']) assert.ok(!isLoopbackAddress(address), address);
  });

  test('Host header names', () => {
    assert.equal(hostname('LocalHost:9009'), 'localhost');
    assert.equal(hostname('[::1]:9009'), '[::1]');
    const check = createHostCheck('127.0.0.1', ['app.test']);
    for (const host of ['localhost', '127.0.0.1:1', '127.9.9.9', '[::1]', '[::1]:80', 'app.test:1', 'APP.test']) {
      assert.ok(check(host), host);
    }
    for (const host of ['evil.test', '[::2]', '127.0.0.1.evil.test', 'localhost.test', '']) assert.ok(!check(host), host);
    assert.equal(createHostCheck('0.0.0.0'), null);
    assert.ok(!createHostCheck('0.0.0.0', ['app.test'])('evil.test'));
  });
});

test('config serialization follows js-host 0.11', () => {
  const config = withDefaults({ functions: { a() {}, b() {} }, logger: {}, extendHost() {}, x: 1 }, {
    functions: null, address: '127.0.0.1', port: '9009', silent: false, outputOnListen: true, requestDataLimit: '10mb',
  });
  assert.deepEqual(serializableConfig(config), {
    functions: ['a', 'b'], x: 1, address: '127.0.0.1', port: '9009', requestDataLimit: '10mb',
  });
});

test('code version: the files\' contents, not their times; any change gives another', (t) => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'js-host-cv-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'host.config.js');
  const component = path.join(dir, 'component.js');
  fs.writeFileSync(config, "module.exports = require('./component');");
  fs.writeFileSync(component, 'module.exports = 1;');
  const first = codeVersion([config, component]);
  assert.match(first, /^[0-9a-f]{16}$/);
  fs.utimesSync(component, new Date(0), new Date(0));
  assert.equal(codeVersion([component, config]), first);
  fs.writeFileSync(component, 'module.exports = 2;');
  assert.notEqual(codeVersion([config, component]), first);
  assert.notEqual(codeVersion([config]), codeVersion([config, component]));
});
