'use strict';

// The manager: js-host 0.11's endpoints and JSON shapes, the connection
// lifecycle, and what we add (secret, Host check, crash handling, start
// failures with the end of the logfile).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, test } = require('node:test');
const {
  FIXTURES,
  runCli,
  startServer,
  request,
  managerRequest,
  tempRuntimeDir,
  waitClosed,
  waitFor,
  isAlive,
  sleep,
} = require('./helpers');
const runtime = require('../lib/runtime');

const CONFIG = path.join(FIXTURES, 'manager.config.js');
const HOST_CONFIG = path.join(FIXTURES, 'host.config.js');

async function startManager(t, args = [], config = CONFIG) {
  const runtimeDir = tempRuntimeDir(t);
  const manager = await startServer(t, config, ['--manager', ...args], { runtimeDir });
  manager.runtimeDir = runtimeDir;
  manager.secretFile = path.join(runtimeDir, 'manager.secret');
  manager.secret = fs.readFileSync(manager.secretFile, 'utf8');
  manager.post = async (endpoint, data) => {
    const res = await managerRequest(manager.url, manager.secret, `/${endpoint}`, { method: 'POST', json: data });
    assert.ok(res.signed, `the answer to /${endpoint} carries no valid MAC`);
    return res;
  };
  return manager;
}

/** A manager (as startManager makes it) and the record of the host of CONFIG it started. */
async function startManagerWithHost(t) {
  const manager = await startManager(t);
  const started = await manager.post('host/start', { config: CONFIG });
  return { manager, started };
}

/** The manager exited with code 0 (not by a signal), and the host process `pid` is gone too. */
async function assertExitedWithHost(manager, pid) {
  assert.deepEqual(await manager.exited, { code: 0, signal: null });
  assert.ok(!isAlive(pid));
}

function hostUrl(hostRecord) {
  const status = JSON.parse(hostRecord.output);
  return `http://127.0.0.1:${status.config.port}`;
}

async function hostPid(hostRecord) {
  const res = await request(`${hostUrl(hostRecord)}/function/pid`, { method: 'POST', json: {} });
  return Number(res.body);
}

/** Make a managed host crash; resolves once the manager has noticed. */
async function crashHost(manager, hostRecord) {
  const pid = await hostPid(hostRecord);
  await request(`${hostUrl(hostRecord)}/function/crash`, { method: 'POST', json: {} });
  await waitFor(() => !isAlive(pid), 5000, 'the host to crash');
  const config = hostRecord.config;
  await waitFor(async () => !(await manager.post('host/status', { config })).json.started, 5000, 'the manager to notice');
}

describe('manager security', () => {
  test('creates the secret (0600, 64 hex) and requires it on every request', async (t) => {
    const manager = await startManager(t);
    assert.match(manager.secret, /^[0-9a-f]{64}$/);
    assert.equal(fs.statSync(manager.secretFile).mode & 0o777, 0o600);
    assert.equal(fs.statSync(manager.runtimeDir).mode & 0o777, 0o700);
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Bearer ${manager.secret}` }]) {
      const res = await request(`${manager.url}/status`, { headers });
      assert.equal(res.status, 401);
      assert.ok(res.body.includes(manager.secretFile), res.body);
    }
    const res = await request(`${manager.url}/host/start`, { method: 'POST', json: { config: CONFIG } });
    assert.equal(res.status, 401);
    const ok = await managerRequest(manager.url, manager.secret, '/status');
    assert.equal(ok.status, 200);
    assert.ok(ok.signed);
    assert.deepEqual(ok.json, manager.status);
    assert.equal(manager.status.type, 'Manager');
    assert.equal(manager.status.auth, 'js-host-hmac-1');
    assert.ok(!('disconnectTimeout' in manager.status.config));
  });

  test('checks the Host header', async (t) => {
    const manager = await startManager(t);
    await assert.rejects(managerRequest(manager.url, manager.secret, '/status', { headers: { host: 'rebound.evil.test' } }), /no challenge: 403/);
  });

  test('accepts a secret file with a trailing newline, as the Python client does', async (t) => {
    const dir = tempRuntimeDir(t);
    const secret = 'cd'.repeat(32);
    fs.writeFileSync(path.join(dir, 'manager.secret'), `${secret}\n`, { mode: 0o600 });
    const manager = await startServer(t, CONFIG, ['--manager'], { runtimeDir: dir });
    const ok = await managerRequest(manager.url, secret, '/status');
    assert.equal(ok.status, 200);
    await assert.rejects(managerRequest(manager.url, `${secret}\n`, '/status'), /wrong proof/);
  });

  test('reuses an existing secret', async (t) => {
    const dir = tempRuntimeDir(t);
    const secret = 'ab'.repeat(32);
    fs.writeFileSync(path.join(dir, 'manager.secret'), secret, { mode: 0o600 });
    const manager = await startServer(t, CONFIG, ['--manager'], { runtimeDir: dir });
    const res = await managerRequest(manager.url, secret, '/status');
    assert.equal(res.status, 200);
  });

  test('refuses a runtime dir that others can read, and a non-loopback address', (t) => {
    const dir = tempRuntimeDir(t);
    fs.chmodSync(dir, 0o755);
    const result = runCli([CONFIG, '--manager', '--json', '-p', '0'], { runtimeDir: dir });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /accessible by other users .*chmod 700/);

    const config = path.join(tempRuntimeDir(t), 'public.config.js');
    fs.writeFileSync(config, "module.exports = {address: '0.0.0.0'};");
    const open = runCli([config, '--manager', '--json', '-p', '0'], { runtimeDir: tempRuntimeDir(t) });
    assert.equal(open.status, 1);
    assert.match(open.stderr, /loopback/);
  });
});

describe('manager endpoints', () => {
  test('start, status, connect, restart, disconnect, stop: js-host 0.11 shapes', async (t) => {
    const manager = await startManager(t);
    assert.deepEqual((await manager.post('host/status', { config: CONFIG })).json, { started: false });
    // Another host with a client keeps the manager running after CONFIG's host stops.
    assert.equal((await manager.post('host/start', { config: HOST_CONFIG })).status, 200);
    assert.equal((await manager.post('host/connect', { config: HOST_CONFIG })).status, 200);

    const started = await manager.post('host/start', { config: CONFIG });
    assert.equal(started.status, 200, started.body);
    // js-host 0.11's keys, then the host process's id and pid.
    assert.deepEqual(Object.keys(started.json), ['output', 'logfile', 'config', 'connections', 'id', 'pid']);
    assert.equal(started.json.config, CONFIG);
    assert.deepEqual(started.json.connections, []);
    const status = await manager.post('host/status', { config: CONFIG });
    assert.deepEqual(status.json, { started: true, host: started.json });
    const connected = await manager.post('host/connect', { config: CONFIG });
    assert.match(connected.json.connection, /^\d+-[0-9a-f-]{36}$/);
    assert.deepEqual(connected.json.connections, [connected.json.connection]);

    assert.ok(started.json.output.endsWith('\n'));
    const hostStatus = JSON.parse(started.json.output);
    assert.equal(hostStatus.type, 'Host');
    assert.notEqual(hostStatus.config.port, 0);
    assert.equal(path.dirname(started.json.logfile), manager.runtimeDir);
    // The status line adds the user's loaded files (config included) and their mtimes for the
    // manager's clients; GET /status never shows them.
    const { loadedFiles, ...shown } = hostStatus;
    assert.equal(loadedFiles[CONFIG], String(fs.statSync(CONFIG, { bigint: true }).mtimeNs));
    assert.ok(Object.keys(loadedFiles).every((file) => !file.includes('node_modules')), loadedFiles);
    const live = await request(`${hostUrl(started.json)}/status`);
    // The bare /status is the rest of the status line (?errors would add the last errors).
    assert.deepEqual(JSON.parse(live.body), shown);

    const again = await manager.post('host/start', { config: CONFIG });
    assert.equal(again.status, 500);
    assert.equal(again.body, 'Host already running');

    const pidBefore = await hostPid(started.json);
    assert.equal(started.json.pid, pidBefore);
    const restarted = await manager.post('host/restart', { config: CONFIG });
    assert.equal(restarted.status, 200, restarted.body);
    assert.equal(JSON.parse(restarted.json.output).config.port, hostStatus.config.port);
    assert.equal(restarted.json.logfile, started.json.logfile);
    assert.deepEqual(restarted.json.connections, [connected.json.connection]);
    const pidAfter = await hostPid(restarted.json);
    assert.equal(restarted.json.pid, pidAfter);
    assert.notEqual(pidAfter, pidBefore);
    assert.ok(!isAlive(pidBefore));

    assert.equal((await manager.post('host/disconnect', { config: CONFIG })).status, 500);
    const unknownConnection = await manager.post('host/disconnect', { config: CONFIG, connection: 'nope' });
    assert.deepEqual(unknownConnection.json, { started: true, config: CONFIG, stopTimeout: null, status: 'Disconnected' });

    const stopped = await manager.post('host/stop', { config: CONFIG });
    assert.equal(stopped.status, 200);
    assert.deepEqual(Object.keys(stopped.json), ['output', 'logfile', 'config', 'connections', 'id', 'pid']);
    assert.ok(!isAlive(pidAfter));
    assert.deepEqual((await manager.post('host/status', { config: CONFIG })).json, { started: false });

    const missing = await manager.post('host/stop', { config: CONFIG });
    assert.equal(missing.status, 500);
    assert.equal(missing.body, `No known host with config: ${CONFIG}`);
    assert.equal((await manager.post('host/restart', { config: CONFIG })).status, 500);
    assert.equal((await manager.post('host/connect', { config: CONFIG })).status, 500);
    const gone = await manager.post('host/disconnect', { config: CONFIG, connection: 'x' });
    assert.deepEqual(gone.json, { started: false, config: CONFIG, stopTimeout: null, status: 'Host has already stopped' });
  });

  test('concurrent starts of one config: one host, both get it', async (t) => {
    const manager = await startManager(t);
    const [a, b] = await Promise.all([
      manager.post('host/start', { config: CONFIG }),
      manager.post('host/start', { config: CONFIG }),
    ]);
    assert.equal(a.status, 200, a.body);
    assert.equal(b.status, 200, b.body);
    assert.equal(a.json.output, b.json.output);
  });

  test('bad requests', async (t) => {
    const manager = await startManager(t);
    let res = await manager.post('host/start', {});
    assert.equal(res.status, 500);
    assert.equal(res.body, 'No `config` data provided');
    res = await manager.post('host/start', { config: 'relative.config.js' });
    assert.equal(res.status, 400);
    res = await managerRequest(manager.url, manager.secret, '/host/start', {
      method: 'POST',
      body: '{nope',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 400);
    res = await manager.post('host/unknown', { config: CONFIG });
    assert.equal(res.status, 404);
  });

  test('a host that fails to start: 500 with the end of its logfile', async (t) => {
    const manager = await startManager(t);
    const config = path.join(manager.runtimeDir, 'broken.config.js');
    fs.writeFileSync(config, 'module.exports = {\n  functions: {\n    a: function( {\n}}');
    const res = await manager.post('host/start', { config });
    assert.equal(res.status, 500);
    assert.match(res.body, /failed to start/);
    assert.match(res.body, /Syntax error in config file .*broken\.config\.js line 4/);
    assert.deepEqual((await manager.post('host/status', { config })).json, { started: false });
    // The manager is still fine.
    assert.equal((await manager.post('host/start', { config: HOST_CONFIG })).status, 200);
  });

  test('a crashed host is forgotten; restart brings it back on its port, start anew', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const connection = (await manager.post('host/connect', { config: CONFIG })).json.connection;
    const crash = async (record) => {
      const pid = await hostPid(record);
      await request(`${hostUrl(record)}/function/crash`, { method: 'POST', json: {} });
      await waitFor(() => !isAlive(pid), 5000, 'the host to crash');
      await waitFor(async () => !(await manager.post('host/status', { config: CONFIG })).json.started, 5000, 'the manager to notice');
    };
    await crash(started.json);
    assert.match(fs.readFileSync(started.json.logfile, 'utf8'), /Host listening at/);
    // The status names the process that crashed and how it ended.
    const status = (await manager.post('host/status', { config: CONFIG })).json;
    assert.equal(status.started, false);
    assert.deepEqual(Object.keys(status.crashed).sort(), ['exit', 'id', 'logfile']);
    assert.equal(status.crashed.id, started.json.id);
    assert.match(status.crashed.exit, /^exit code \d+$/);
    assert.equal(status.crashed.logfile, started.json.logfile);

    const restarted = await manager.post('host/restart', { config: CONFIG });
    assert.equal(restarted.status, 200, restarted.body);
    assert.equal(hostUrl(restarted.json), hostUrl(started.json));
    assert.deepEqual(restarted.json.connections, [connection]);
    assert.equal((await request(`${hostUrl(restarted.json)}/function/echo`, { method: 'POST', json: { a: 1 } })).body, '{"a":1}');

    assert.notEqual(restarted.json.id, started.json.id);
    await crash(restarted.json);
    const again = await manager.post('host/start', { config: CONFIG });
    assert.equal(again.status, 200, again.body);
    assert.deepEqual(again.json.connections, []);
  });
});

describe('manager lifecycle', () => {
  test('the last disconnect stops the host after disconnectTimeout, then the manager exits', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const pid = await hostPid(started.json);
    const first = (await manager.post('host/connect', { config: CONFIG })).json.connection;
    const second = (await manager.post('host/connect', { config: CONFIG })).json.connection;
    assert.notEqual(first, second);

    let res = await manager.post('host/disconnect', { config: CONFIG, connection: first });
    assert.deepEqual(res.json, { started: true, config: CONFIG, stopTimeout: null, status: 'Disconnected' });
    res = await manager.post('host/disconnect', { config: CONFIG, connection: second });
    assert.deepEqual(res.json, {
      started: true,
      config: CONFIG,
      stopTimeout: 300,
      status: 'Disconnected. Stopping host in 300ms',
    });
    // A new connection within the timeout cancels the stop.
    const third = (await manager.post('host/connect', { config: CONFIG })).json.connection;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(isAlive(pid));
    res = await manager.post('host/disconnect', { config: CONFIG, connection: third });
    assert.equal(res.json.stopTimeout, 300);

    await assertExitedWithHost(manager, pid);
  });

  test('/manager/stop stops the hosts and the manager', async (t) => {
    const manager = await startManager(t);
    const a = await manager.post('host/start', { config: CONFIG });
    await manager.post('host/connect', { config: CONFIG });
    const b = await manager.post('host/start', { config: HOST_CONFIG });
    await manager.post('host/connect', { config: HOST_CONFIG });
    const pid = await hostPid(a.json);
    const res = await manager.post('manager/stop', {});
    assert.equal(res.body, 'Stopping...');
    await assertExitedWithHost(manager, pid);
    await waitClosed(JSON.parse(b.json.output).config.port);
  });

  test('SIGTERM stops the hosts too', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const pid = await hostPid(started.json);
    manager.kill('SIGTERM');
    await assertExitedWithHost(manager, pid);
  });

  test('hosts exit when their manager is killed', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const pid = await hostPid(started.json);
    process.kill(manager.child.pid, 'SIGKILL');
    await manager.exited;
    await waitFor(() => !isAlive(pid), 5000, 'the orphaned host to exit');
  });
});

describe('the manager exits once no host is left', () => {
  test('/host/stop of the last host: the answer, then the manager exits', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const pid = await hostPid(started.json);
    await manager.post('host/connect', { config: CONFIG });
    // The connection cancelled the stop that follows a start.
    await sleep(600);
    assert.ok(isAlive(pid));
    const stopped = await manager.post('host/stop', { config: CONFIG });
    assert.equal(stopped.status, 200);
    assert.equal(stopped.json.config, CONFIG);
    await assertExitedWithHost(manager, pid);
  });

  test('a host nobody connects to stops after the idle timeout, then the manager exits', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    assert.equal(started.status, 200, started.body);
    const pid = await hostPid(started.json);
    await assertExitedWithHost(manager, pid);
  });

  test('disconnectTimeout runs from the last disconnect, not from the start (js-host 0.11)', async (t) => {
    // A manager whose disconnectTimeout is 1 ms, as in the 2015 test suites' config.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'js-host-quick-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const quick = path.join(dir, 'quick.config.js');
    fs.writeFileSync(quick, `module.exports = Object.assign({}, require(${JSON.stringify(CONFIG)}), { disconnectTimeout: 1 });\n`);
    const manager = await startManager(t, [], quick);
    const started = await manager.post('host/start', { config: CONFIG });
    assert.equal(started.status, 200, started.body);
    await sleep(200); // the client that started the host is slow to connect
    const connected = await manager.post('host/connect', { config: CONFIG });
    assert.equal(connected.status, 200, connected.body);
    const pid = await hostPid(started.json);
    assert.ok(Number.isInteger(pid) && isAlive(pid));
    const left = await manager.post('host/disconnect', { config: CONFIG, connection: connected.json.connection });
    assert.equal(left.json.stopTimeout, 1);
    await assertExitedWithHost(manager, pid);
  });

  test('a crashed host: kept while it has connections, the last disconnect lets the manager exit', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const { connection } = (await manager.post('host/connect', { config: CONFIG })).json;
    await crashHost(manager, started.json);
    await sleep(600);
    assert.equal((await manager.post('host/status', { config: CONFIG })).status, 200);
    const res = await manager.post('host/disconnect', { config: CONFIG, connection });
    assert.deepEqual(res.json, { started: false, config: CONFIG, stopTimeout: null, status: 'Host has already stopped' });
    assert.deepEqual(await manager.exited, { code: 0, signal: null });
  });

  test('a crashed host without connections is forgotten, then the manager exits', async (t) => {
    const { manager, started } = await startManagerWithHost(t);
    const pid = await hostPid(started.json);
    await request(`${hostUrl(started.json)}/function/crash`, { method: 'POST', json: {} }).catch(() => {});
    await assertExitedWithHost(manager, pid);
  });

  test('a failed restart of the last host: the answer, then the manager exits', async (t) => {
    const manager = await startManager(t);
    const config = path.join(manager.runtimeDir, 'changing.config.js');
    fs.writeFileSync(config, `module.exports = require(${JSON.stringify(CONFIG)});`);
    const started = await manager.post('host/start', { config });
    await manager.post('host/connect', { config });
    await crashHost(manager, started.json);
    fs.writeFileSync(config, 'module.exports = {');
    const res = await manager.post('host/restart', { config });
    assert.equal(res.status, 500);
    assert.match(res.body, /failed to start/);
    assert.deepEqual(await manager.exited, { code: 0, signal: null });
  });

  test('a manager that is never asked for a host exits after its idle timeout', async (t) => {
    const manager = await startManager(t);
    // disconnectTimeout 300 ms x 12
    assert.deepEqual(await manager.exited, { code: 0, signal: null });
    assert.match(manager.stdout, /no host was started within 3600ms/);
  });
});

describe('managed host logfiles', () => {
  test('a logfile over 1 MiB keeps only its end when its host starts', async (t) => {
    const manager = await startManager(t);
    const logfile = runtime.managedHostLogfile(manager.runtimeDir, CONFIG);
    const line = `${'x'.repeat(99)}\n`;
    fs.writeFileSync(logfile, `first old line\n${line.repeat(20000)}last old line\n`);
    const started = await manager.post('host/start', { config: CONFIG });
    assert.equal(started.json.logfile, logfile);
    await waitFor(() => fs.readFileSync(logfile, 'utf8').includes('Host listening at'), 5000, 'the host to log');
    const text = fs.readFileSync(logfile, 'utf8');
    assert.ok(Buffer.byteLength(text) < runtime.LOGFILE_MAX_BYTES, `${Buffer.byteLength(text)} bytes`);
    assert.ok(!text.includes('first old line'));
    assert.ok(text.includes('last old line\n'));
    assert.match(text, /its beginning was cut/);
  });
});
