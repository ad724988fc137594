'use strict';

// The CLI: js-host 0.11's outputs, clear one-line errors for bad configs,
// --detached, graceful shutdown on signals.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const VERSION = require('../lib/version');
const { PROTOCOL_VERSION } = require('../lib/server');
const {
  // configs and the CLI
  FIXTURES, runCli, writeConfig, tempRuntimeDir,
  // servers and requests
  startServer, request, managerRequest, call, waitClosed, sleep,
} = require('./helpers');
const runtime = require('../lib/runtime');

const CONFIG = path.join(FIXTURES, 'host.config.js');

describe('cli outputs', () => {
  test('--config prints the status JSON, in js-host 0.11 key order', (t) => {
    const { config } = writeConfig(t, 'a.config.js', 'module.exports = {functions: {b: (d, cb) => cb(null, 1)}, extra: 1};');
    const result = runCli([config, '--config']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, '');
    // js-host 0.11's keys first (the protocol version as "version"); then this release and the
    // version of the code (see code_version.js).
    assert.match(
      result.stdout,
      new RegExp(
        `^\\{"type":"Host","version":"${PROTOCOL_VERSION}","config":\\{"functions":\\["b"\\],"extra":1,"address":"127.0.0.1",` +
          `"port":"9009","requestDataLimit":"10mb"\\},"packageVersion":"${VERSION}","codeVersion":"[0-9a-f]{16}"\\}\\n$`,
      ),
    );
    const withPort = JSON.parse(runCli([config, '-c', '-p', '1234']).stdout);
    assert.deepEqual(Object.keys(withPort.config), ['functions', 'extra', 'address', 'port', 'requestDataLimit']);
    assert.equal(withPort.config.port, 1234);
    const manager = JSON.parse(runCli([config, '--config', '--manager']).stdout);
    assert.equal(manager.type, 'Manager');
  });

  test('protocolVersion: the js-host protocol /status announces (0.12 for python js-host 0.2.0)', (t) => {
    const { config } = writeConfig(t, 'p.config.js', "module.exports = {protocolVersion: '0.12.0', functions: {}};");
    const status = JSON.parse(runCli([config, '-c']).stdout);
    assert.equal(status.version, '0.12.0');
    assert.equal(status.packageVersion, VERSION);
  });

  test("the status line's config: the config's own port comes first", (t) => {
    const { config } = writeConfig(t, 'b.config.js', 'module.exports = {port: 9321, functions: {}};');
    const status = JSON.parse(runCli([config, '-c']).stdout);
    assert.deepEqual(status.config, { port: 9321, functions: [], address: '127.0.0.1', requestDataLimit: '10mb' });
  });

  test('a config without functions is an error naming the file, not an empty host', (t) => {
    const { config } = writeConfig(t, 'nofunctions.config.js', 'module.exports = {port: 9321};');
    const shown = runCli([config, '-c']);
    assert.equal(shown.status, 1);
    assert.match(shown.stderr, /has no functions: add functions: \{<name>: <function>\}/);
    assert.ok(shown.stderr.includes(config), shown.stderr);
  });

  test('-v, -h, usage errors', () => {
    assert.equal(runCli(['-v']).stdout, '1.0.0\n');
    assert.equal(runCli(['--version']).stdout, `${VERSION}\n`);
    const help = runCli(['-h']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--detached/);
    const none = runCli([]);
    assert.equal(none.status, 1);
    assert.match(none.stderr, /Not enough non-option arguments/);
    const unknown = runCli([CONFIG, '--bogus']);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /Unknown argument: --bogus/);
    const badPort = runCli([CONFIG, '-c', '--port', 'abc']);
    assert.equal(badPort.status, 1);
  });

  test('--json prints one status line with the real port', async (t) => {
    const host = await startServer(t, CONFIG);
    assert.notEqual(host.port, 0);
    assert.equal(host.stdout.split('\n')[0], JSON.stringify(host.status));
    const res = await request(`${host.url}/status`);
    // The bare /status is that line exactly (the 2015 clients compare them); ?errors adds the last errors.
    assert.equal(res.body, JSON.stringify(host.status));
    const withErrors = await request(`${host.url}/status?errors`);
    assert.equal(withErrors.body, `${JSON.stringify(host.status).slice(0, -1)},"lastErrors":[]}`);
  });
});

describe('bad configs: exit 1, one line on stderr naming the file', () => {
  const cases = {
    'missing file': [null, /Config file not found: .*missing\.config\.js/],
    'syntax error': ['module.exports = {\n  functions: {\n    a: function( {\n}}', /Syntax error in config file .*bad\.config\.js line 4: /],
    'not an object': ['module.exports = 42;', /Config file does not export an object: .*bad\.config\.js/],
    'no exports': ['var x = 1;', /does not export an object .*bad\.config\.js/],
    'throws': ['throw new Error("no way");', /Error loading config file .*bad\.config\.js line 1: no way/],
    'bad function': ['module.exports = {functions: {a: 1}};', /Function handlers must be functions: "a"/],
    'bad requestDataLimit': ['module.exports = {requestDataLimit: "lots", functions: {}};', /requestDataLimit/],
    'a protocol it does not speak': ['module.exports = {protocolVersion: "1.0.0", functions: {}};', /protocolVersion must be .*'0\.11\.x' or '0\.12\.x', not "1\.0\.0"/],
  };
  for (const [name, [text, pattern]] of Object.entries(cases)) {
    test(name, (t) => {
      const dir = tempRuntimeDir(t);
      const file = path.join(dir, text === null ? 'missing.config.js' : 'bad.config.js');
      if (text !== null) fs.writeFileSync(file, text);
      for (const args of [[file], [file, '--config'], [file, '--json', '-p', '0']]) {
        const result = runCli(args, { runtimeDir: dir });
        assert.equal(result.status, 1);
        assert.equal(result.stdout, '');
        assert.match(result.stderr, pattern);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      }
    });
  }

  test('the error also goes to the logfile', (t) => {
    const dir = tempRuntimeDir(t);
    const file = path.join(dir, 'bad.config.js');
    fs.writeFileSync(file, 'module.exports = {');
    const logfile = path.join(dir, 'out.log');
    runCli([file, '--json', '-l', logfile], { runtimeDir: dir });
    assert.match(fs.readFileSync(logfile, 'utf8'), /Syntax error in config file/);
  });

  test('a port in use: exit 1, EADDRINUSE on stderr', async (t) => {
    const host = await startServer(t, CONFIG);
    const result = runCli([CONFIG, '--json', '-p', String(host.port)]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /EADDRINUSE/);
  });
});

describe('signals', () => {
  test('SIGTERM finishes in-flight requests, then exits 0', async (t) => {
    const host = await startServer(t, CONFIG);
    const pending = call(host, 'slow', { ms: 300 });
    await sleep(100);
    host.kill('SIGTERM');
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(res.body, 'slow done');
    assert.deepEqual(await host.exited, { code: 0, signal: null });
  });

  test('SIGINT on an idle host exits 0 at once', async (t) => {
    const host = await startServer(t, CONFIG);
    await call(host, 'hello');
    host.kill('SIGINT');
    assert.deepEqual(await host.exited, { code: 0, signal: null });
  });

  test('a second signal exits 1 at once', async (t) => {
    const { config } = writeConfig(t, 'hang.config.js', 'module.exports = {functionTimeout: 0, functions: {never: () => {}}};');
    const host = await startServer(t, config);
    const pending = call(host, 'never').catch((err) => err);
    await sleep(100);
    host.kill('SIGTERM');
    await sleep(100);
    host.kill('SIGTERM');
    assert.deepEqual(await host.exited, { code: 1, signal: null });
    await pending;
  });
});

describe('--detached', () => {
  test('prints the status of a detached copy once it listens', async (t) => {
    const dir = tempRuntimeDir(t);
    const result = runCli([path.join(FIXTURES, 'manager.config.js'), '--manager', '--detached', '-p', '0'], {
      runtimeDir: dir,
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, '');
    const status = JSON.parse(result.stdout);
    assert.equal(status.type, 'Manager');
    assert.notEqual(status.config.port, 0);
    const url = `http://127.0.0.1:${status.config.port}`;
    const secret = fs.readFileSync(path.join(dir, 'manager.secret'), 'utf8');
    const stop = () => managerRequest(url, secret, '/manager/stop', { method: 'POST' });
    t.after(() => stop().catch(() => {}));
    const res = await managerRequest(url, secret, '/status');
    assert.deepEqual(res.json, status);
    await stop();
    await waitClosed(status.config.port);
  });

  test('the output file of a detached manager is capped when it starts', async (t) => {
    const dir = tempRuntimeDir(t);
    const config = path.join(FIXTURES, 'manager.config.js');
    const output = runtime.detachedOutputFile(dir, 'manager', config);
    fs.writeFileSync(output, `first old line\n${'x'.repeat(2 * runtime.LOGFILE_MAX_BYTES)}\nlast old line\n`);
    const result = runCli([config, '--manager', '--detached', '-p', '0'], { runtimeDir: dir });
    assert.equal(result.status, 0, result.stderr);
    const status = JSON.parse(result.stdout);
    const url = `http://127.0.0.1:${status.config.port}`;
    const secret = fs.readFileSync(path.join(dir, 'manager.secret'), 'utf8');
    const stop = () => managerRequest(url, secret, '/manager/stop', { method: 'POST' });
    t.after(() => stop().catch(() => {}));
    const text = fs.readFileSync(output, 'utf8');
    assert.ok(Buffer.byteLength(text) < runtime.LOGFILE_MAX_BYTES, `${Buffer.byteLength(text)} bytes`);
    assert.ok(!text.includes('first old line'));
    assert.ok(text.includes('last old line\n'));
    assert.ok(text.includes(result.stdout.trim()));
    await stop();
    await waitClosed(status.config.port);
  });

  test('a detached copy that fails reports on stderr and exits 1', (t) => {
    // Loads fine in the parent, fails in the copy (the marker file exists then).
    const { dir, config } = writeConfig(t, 'throws-later.config.js', (folder) => {
      const marker = JSON.stringify(path.join(folder, 'loaded-once'));
      return `const fs = require('fs');
        if (fs.existsSync(${marker})) throw new Error('second load fails');
        fs.writeFileSync(${marker}, '');
        module.exports = {functions: {}};`;
    });
    const result = runCli([config, '--detached', '-p', '0'], { runtimeDir: dir });
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /second load fails/);
  });
});

describe('an async set-up that leaves a handle open', () => {
  // A timer the set-up starts (and never clears) must not keep --config, or the parent of
  // --detached, from exiting: the Python client waits for that exit.
  const SETUP = (folder) => `const fs = require('fs');
    module.exports = async () => {
      fs.appendFileSync(${JSON.stringify(path.join(folder, 'pids'))}, process.pid + '\\n');
      setInterval(() => {}, 1000);
      return {functions: {echo: (data, cb) => cb(null, data)}};
    };`;

  test('--config exits once it printed the status', (t) => {
    const { config } = writeConfig(t, 'interval.config.js', SETUP);
    const result = runCli([config, '--config']);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout).config.functions, ['echo']);
  });

  test('--detached exits once the copy listens', async (t) => {
    const { dir, config } = writeConfig(t, 'interval.config.js', SETUP);
    const result = runCli([config, '--detached', '-p', '0'], { runtimeDir: dir });
    // The copy loaded the config last: its pid is the last line (the parent's the first).
    const pids = fs.readFileSync(path.join(dir, 'pids'), 'utf8').trim().split('\n').map(Number);
    t.after(() => {
      try {
        process.kill(pids.at(-1), 'SIGTERM');
      } catch {
        // already gone
      }
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(pids.length, 2);
    const status = JSON.parse(result.stdout);
    const res = await call({ url: `http://127.0.0.1:${status.config.port}` }, 'echo', { a: 1 });
    assert.equal(res.status, 200);
    process.kill(pids[1], 'SIGTERM');
    await waitClosed(status.config.port);
  });
});
