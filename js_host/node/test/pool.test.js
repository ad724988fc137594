'use strict';

// A host with a pool of workers (`--workers N`): hard deadlines, crash
// isolation, recycling, reload without downtime, back-pressure, readiness,
// and no worker left behind. Real processes; no assertion on timings.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { describe, test } = require('node:test');
const {
  // configs and the CLI
  runCli, writeConfig, tempRuntimeDir,
  // servers and requests
  startServer, request, call, managerRequest, waitFor, sleep, isAlive,
} = require('./helpers');

// Functions of every pool test; `version` is what version.js beside the config exports.
const FUNCTIONS = `
const fs = require('fs');
const path = require('path');
const versionFile = path.join(__dirname, 'version.js');
const version = fs.existsSync(versionFile) ? require(versionFile) : 'none';
const functions = {
  echo: (data, cb) => cb(null, data),
  pid: (data, cb) => cb(null, String(process.pid)),
  version: (data, cb) => cb(null, version),
  slow: (data, cb) => setTimeout(() => cb(null, 'slow done'), data.ms),
  loop: () => { for (;;) {} },
  throwLater: () => { setTimeout(() => { throw new Error('thrown in a timer'); }, 10); },
  rejectLater: () => { Promise.reject(new Error('nobody handles this')); },
  exit: () => process.exit(3),
  hog: () => { const kept = []; for (;;) kept.push(new Array(100000).fill(1)); },
  context: function (data, cb) {
    this.host.logger.info('logged from a worker ' + data.marker);
    cb(null, { name: this.name, hasLogger: typeof this.host.logger.info === 'function', extra: this.host.config.extra,
      hasReq: 'req' in this, hasRes: 'res' in this });
  },
};
`;

/**
 * Write a config (FUNCTIONS + `settings`) in a new dir, with version.js saying
 * `version`, start it with `--workers N`, and wait until all its workers are ready.
 */
async function startPool(t, { workers = 2, settings = '', args = [], prelude = '', version } = {}) {
  const { dir, config } = writeConfig(
    t,
    'pool.config.js',
    `${prelude}${FUNCTIONS}\nmodule.exports = { functionTimeout: 1000, extra: 'x', ${settings} functions };\n`,
  );
  if (version !== undefined) writeVersion(dir, version);
  const logfile = path.join(dir, 'host.log');
  const host = await startServer(t, config, ['--workers', String(workers), '--logfile', logfile, ...args]);
  host.dir = dir;
  host.config = config;
  host.logfile = logfile;
  await waitFor(async () => (await status(host)).workers.ready === workers, 20000, `${workers} workers ready`);
  return host;
}

function writeVersion(dir, version) {
  fs.writeFileSync(path.join(dir, 'version.js'), `module.exports = ${JSON.stringify(version)};\n`);
}

/** Resolves once the logfile says the `n`th reload is done. */
async function reloaded(host, n) {
  await waitFor(
    () => (fs.readFileSync(host.logfile, 'utf8').match(/Host: reload done/g) || []).length >= n,
    20000,
    `reload ${n} to be done`,
  );
}

async function status(host) {
  return JSON.parse((await request(`${host.url}/status`)).body);
}

/** `count` calls of `name`, `concurrency` at a time: the statuses seen, by status. */
async function load(host, name, { count, concurrency = 8, data = {} }) {
  const statuses = {};
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      const res = await call(host, name, data);
      statuses[res.status] = (statuses[res.status] || 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

/** Calls from `concurrency` loops until stop() is called: resolves to {statuses, bodies}. */
function loadUntilStopped(host, name, concurrency = 8) {
  const statuses = {};
  const bodies = [];
  let stopped = false;
  const worker = async () => {
    while (!stopped) {
      const res = await call(host, name);
      statuses[res.status] = (statuses[res.status] || 0) + 1;
      bodies.push(res.body);
    }
  };
  const done = Promise.all(Array.from({ length: concurrency }, worker)).then(() => ({ statuses, bodies }));
  return {
    stop() {
      stopped = true;
      return done;
    },
  };
}

function workerPids(host) {
  // The worker processes are the children of the host (js-host's own process group).
  const out = require('node:child_process').spawnSync('pgrep', ['-P', String(host.child.pid)], { encoding: 'utf8' });
  return out.stdout.split('\n').filter(Boolean).map(Number);
}

async function waitForLog(file, pattern, timeout = 5000) {
  let text = '';
  await waitFor(
    () => {
      text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      return pattern.test(text);
    },
    timeout,
    `${pattern} in ${file}`,
  );
  return text;
}

function isZombie(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('Z');
  } catch {
    return false;
  }
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

describe('deadlines', () => {
  test('a runaway loop gets 504 naming the function and the limit; the next calls are answered', async (t) => {
    const host = await startPool(t);
    const before = workerPids(host);
    const res = await call(host, 'loop');
    assert.equal(res.status, 504);
    assert.match(res.body, /^Gateway timeout: Function "loop" did not complete within the functionTimeout of 1000ms/);
    assert.match(res.body, /replaced/);
    for (let i = 0; i < 4; i++) assert.equal((await call(host, 'echo', { i })).body, JSON.stringify({ i }));
    await waitFor(async () => (await status(host)).workers.ready === 2, 10000, 'two workers ready');
    const after = await status(host);
    assert.equal(after.workers.restarts.timeout, 1);
    assert.equal(before.filter((pid) => !isAlive(pid)).length, 1, 'one worker was killed');
  });

  test('other calls are served while one worker spins', async (t) => {
    const host = await startPool(t);
    const spinning = call(host, 'loop');
    const statuses = await load(host, 'echo', { count: 20, concurrency: 2 });
    assert.deepEqual(statuses, { 200: 20 });
    assert.equal((await spinning).status, 504);
  });
});

describe('crash isolation', () => {
  const causes = {
    throwLater: /the worker running it threw an uncaught exception: Error: thrown in a timer/,
    rejectLater: /the worker running it left a promise rejection unhandled: Error: nobody handles this/,
    exit: /the worker running it exited with exit code 3 \(process\.exit\(\) in a function\?\)/,
    hog: /the worker running it ran out of memory \(its heap limit is maxWorkerMemory, 96MB\)/,
  };
  test('each cause fails only its own call, under load; the worker is replaced', async (t) => {
    const host = await startPool(t, { settings: "maxWorkerMemory: '96mb', functionTimeout: 20000," });
    const background = loadUntilStopped(host, 'echo');
    for (const [name, pattern] of Object.entries(causes)) {
      const res = await call(host, name);
      assert.equal(res.status, 500, name);
      assert.match(res.body, new RegExp(`^Function "${name}" failed: `));
      assert.match(res.body, pattern);
      assert.match(res.body, new RegExp(`the details are in the host's logfile ${host.logfile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    }
    const { statuses, bodies } = await background.stop();
    assert.deepEqual(Object.keys(statuses), ['200'], JSON.stringify(statuses));
    assert.ok(bodies.every((body) => body === '{}'));
    const { workers } = await status(host);
    assert.deepEqual(
      { ...workers.restarts },
      { uncaughtException: 1, unhandledRejection: 1, exit: 1, outOfMemory: 1 },
    );
    const log = await waitForLog(host.logfile, /Error: thrown in a timer\n\s+at /);
    assert.match(log, /Error: nobody handles this\n\s+at /);
    assert.equal((await call(host, 'echo', { a: 1 })).status, 200);
  });

  test('a worker killed between calls: the next call is answered (by its replacement)', async (t) => {
    const host = await startPool(t, { workers: 1 });
    for (let round = 1; round <= 2; round++) {
      const pid = Number((await call(host, 'pid')).body);
      // The next call arrives while the master is stopped: it hears of the death and of the call at once.
      process.kill(host.child.pid, 'SIGSTOP');
      process.kill(pid, 'SIGKILL');
      await waitFor(() => !isAlive(pid) || isZombie(pid), 5000, 'the worker to die');
      const pending = call(host, 'pid');
      await sleep(200);
      process.kill(host.child.pid, 'SIGCONT');
      const res = await pending;
      assert.equal(res.status, 200, res.body);
      assert.notEqual(Number(res.body), pid);
      assert.equal((await status(host)).workers.restarts.signal, round);
    }
  });

  test('workers that fail to start: the host exits 1 with the error', (t) => {
    const { config } = writeConfig(
      t,
      'broken.config.js',
      `if (require.main && require.main.filename.endsWith('worker_main.js')) throw new Error('cannot load in a worker');
      module.exports = {functions: {a: (d, cb) => cb(null, 'a')}};`,
    );
    const result = runCli([config, '--workers', '2', '--json', '-p', '0']);
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    // The failed starts are logged; the last line says why the host exits.
    const last = result.stderr.trim().split('\n').pop();
    assert.match(last, /^js-host: Error loading config file .*broken\.config\.js line 1: cannot load in a worker$/);
  });
});

describe('settings', () => {
  const cases = {
    'workers: -1': /workers must be a number of worker processes or "auto" \(0: no pool\), not -1/,
    'workers: 2, maxCallsPerWorker: 1.5': /maxCallsPerWorker must be a number of calls \(0: no limit\), not 1\.5/,
    "workers: 2, maxWorkerMemory: 'lots'": /maxWorkerMemory must be a size of at least 32mb, such as '512mb', not "lots"/,
    "workers: 2, maxWorkerMemory: '1mb'": /maxWorkerMemory must be a size of at least 32mb/,
    'workers: 2, maxQueue: -1': /maxQueue must be a number of calls \(0: none wait\), not -1/,
  };
  for (const [settings, pattern] of Object.entries(cases)) {
    test(`${settings}: one line on stderr naming it, exit 1, also with --config`, (t) => {
      const { config } = writeConfig(t, 'settings.config.js', `module.exports = {${settings}, functions: {a: (d, cb) => cb(null, 'a')}};`);
      for (const args of [[config, '--config'], [config, '--json', '-p', '0']]) {
        const result = runCli(args);
        assert.equal(result.status, 1);
        assert.equal(result.stdout, '');
        assert.match(result.stderr, pattern);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      }
    });
  }

  test('--config of a config with workers: the status of its functions, the pool settings shown as set', (t) => {
    const { config } = writeConfig(t, 'shown.config.js', "module.exports = {workers: 'auto', maxQueue: 5, functions: {a: (d, cb) => cb(null, 'a')}};");
    const status = JSON.parse(runCli([config, '--config']).stdout);
    assert.deepEqual(status.config, { workers: 'auto', maxQueue: 5, functions: ['a'], address: '127.0.0.1', port: '9009', requestDataLimit: '10mb' });
  });
});

describe('recycling', () => {
  test('maxCallsPerWorker: workers are replaced between calls, no call fails', async (t) => {
    const host = await startPool(t, { workers: 1, settings: 'maxCallsPerWorker: 5,' });
    // A worker serves until its replacement is ready: call until three have served.
    const pids = new Set();
    let failed = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (pids.size < 3 && next < 5000) {
          next += 1;
          const res = await call(host, 'pid');
          if (res.status === 200) pids.add(res.body);
          else failed += 1;
        }
      }),
    );
    assert.equal(failed, 0);
    assert.ok(pids.size >= 3, `pids: ${[...pids]}`);
    assert.ok((await status(host)).workers.restarts.maxCallsPerWorker >= 1);
  });

  test('maxWorkerMemory: a worker over it after a call is replaced', async (t) => {
    // 40mb: under any worker's RSS, so every call retires its worker.
    const host = await startPool(t, { workers: 1, settings: "maxWorkerMemory: '40mb'," });
    const statuses = await load(host, 'pid', { count: 10, concurrency: 2 });
    assert.deepEqual(statuses, { 200: 10 });
    assert.ok((await status(host)).workers.restarts.maxWorkerMemory >= 1);
  });
});

describe('reload', () => {
  test('SIGHUP under load: no call fails, the new code answers after', async (t) => {
    const host = await startPool(t, { version: 'v1' });
    const before = await status(host);
    const background = loadUntilStopped(host, 'version');
    await sleep(200);
    writeVersion(host.dir, 'v2');
    host.kill('SIGHUP');
    await reloaded(host, 1);
    const { statuses, bodies } = await background.stop();
    assert.deepEqual(Object.keys(statuses), ['200'], JSON.stringify(statuses));
    assert.ok(bodies.every((body) => body === 'v1' || body === 'v2'));
    // Once the reload is done, only the new code answers, and says so.
    const after = await status(host);
    assert.notEqual(after.codeVersion, before.codeVersion);
    assert.equal(after.workers.codeVersion, after.codeVersion);
    assert.equal(after.workers.restarts.reload, 2);
    assert.equal(after.workers.ready, 2);
    for (let i = 0; i < 6; i++) {
      const res = await call(host, 'version');
      assert.equal(res.body, 'v2');
      assert.equal(res.headers['js-host-code-version'], after.codeVersion);
    }
  });

  test('a config that breaks on reload leaves the old code serving, and says why', async (t) => {
    const host = await startPool(t);
    const pids = workerPids(host);
    fs.appendFileSync(host.config, "\nthrow new Error('broken on purpose');\n");
    host.kill('SIGHUP');
    await waitForLog(host.logfile, /reload failed, the workers keep serving the code they loaded: .*broken on purpose/);
    assert.deepEqual(await load(host, 'echo', { count: 10, concurrency: 2 }), { 200: 10 });
    const { workers } = await status(host);
    assert.equal(workers.ready, 2);
    assert.ok(pids.every(isAlive));
  });
});

describe('back-pressure and readiness', () => {
  test('past maxQueue: 503 with Retry-After; the calls admitted are answered', async (t) => {
    const host = await startPool(t, { workers: 1, settings: 'maxQueue: 1, functionTimeout: 20000,' });
    const running = call(host, 'slow', { ms: 1500 });
    await waitFor(async () => (await status(host)).workers.busy === 1, 5000, 'a busy worker');
    const queued = call(host, 'echo', { q: 1 });
    await waitFor(async () => (await status(host)).workers.queue === 1, 5000, 'a queued call');
    const refused = await call(host, 'echo', { q: 2 });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '1');
    assert.match(refused.body, /maxQueue/);
    assert.equal((await running).body, 'slow done');
    assert.equal((await queued).body, '{"q":1}');
  });

  test('GET /health: 503 while the workers start, 200 once one is ready', async (t) => {
    const port = await freePort();
    const prelude = `if (require.main && require.main.filename.endsWith('worker_main.js')) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
    }\n`;
    const started = startPool(t, { workers: 1, args: ['--port', String(port)], prelude });
    const seen = [];
    await waitFor(
      async () => {
        try {
          const res = await request(`http://127.0.0.1:${port}/health`);
          seen.push(res.status);
          return res.status === 200;
        } catch {
          return false;
        }
      },
      20000,
      'a healthy host',
    );
    assert.equal(seen[0], 503, `seen: ${seen}`);
    const host = await started;
    const res = await request(`${host.url}/health`);
    assert.deepEqual(JSON.parse(res.body), { status: 'ready', workers: { size: 1, ready: 1 } });
  });

  test('/status: 0.11 shape, the config as the workers loaded it, and the workers section', async (t) => {
    const host = await startPool(t, { workers: 2 });
    const res = await status(host);
    assert.deepEqual(Object.keys(res), ['type', 'version', 'config', 'packageVersion', 'codeVersion', 'workers']);
    assert.equal(res.type, 'Host');
    assert.equal(res.config.port, host.port);
    assert.ok(res.config.functions.includes('echo'));
    assert.match(res.codeVersion, /^[0-9a-f]{16}$/);
    assert.deepEqual(Object.keys(res.workers), ['size', 'ready', 'busy', 'queue', 'restarts', 'loadedAt', 'codeVersion']);
    assert.equal(res.workers.size, 2);
    assert.equal((await call(host, 'echo')).headers['js-host-code-version'], res.codeVersion);
  });
});

describe('what a function sees', () => {
  test('this.name and this.host (logger, config); no req/res; its log lines reach the logfile', async (t) => {
    const host = await startPool(t);
    const res = await call(host, 'context', { marker: 'm-42' });
    assert.deepEqual(JSON.parse(res.body), { name: 'context', hasLogger: true, extra: 'x', hasReq: false, hasRes: false });
    await waitForLog(host.logfile, /info: logged from a worker m-42\n/);
  });
});

describe('process ownership', () => {
  test('SIGTERM: calls in flight finish, the workers exit, the host exits 0', async (t) => {
    const host = await startPool(t, { settings: 'functionTimeout: 20000,' });
    const pids = workerPids(host);
    assert.equal(pids.length, 2);
    const pending = call(host, 'slow', { ms: 500 });
    await sleep(100);
    host.kill('SIGTERM');
    assert.equal((await pending).body, 'slow done');
    assert.deepEqual(await host.exited, { code: 0, signal: null });
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 5000, 'the workers to exit');
  });

  test('a SIGKILLed host leaves no worker behind, even one stuck in a loop', async (t) => {
    const host = await startPool(t, { settings: 'functionTimeout: 0,' });
    const pids = workerPids(host);
    assert.equal(pids.length, 2);
    call(host, 'loop').catch(() => {});
    await waitFor(async () => (await status(host)).workers.busy === 1, 5000, 'a busy worker');
    host.kill('SIGKILL');
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 10000, 'the workers to exit');
  });
});

describe('managed hosts', () => {
  test('a manager starts hosts with one worker; /host/restart reloads them in place', async (t) => {
    const runtimeDir = tempRuntimeDir(t);
    const { dir, config } = writeConfig(t, 'managed.config.js', `${FUNCTIONS}\nmodule.exports = { functions };\n`);
    writeVersion(dir, 'one');
    const managerConfig = path.join(dir, 'manager.config.js');
    fs.writeFileSync(managerConfig, 'module.exports = {disconnectTimeout: 300};');
    const manager = await startServer(t, managerConfig, ['--manager'], { runtimeDir });
    const secret = fs.readFileSync(path.join(runtimeDir, 'manager.secret'), 'utf8');
    const post = (endpoint) => managerRequest(manager.url, secret, `/${endpoint}`, { method: 'POST', json: { config } });
    const started = await post('host/start');
    assert.equal(started.status, 200, started.body);
    const hostStatus = JSON.parse(started.json.output);
    assert.equal(hostStatus.workers.size, 1);
    const host = { url: `http://127.0.0.1:${hostStatus.config.port}` };
    await post('host/connect');
    assert.equal((await call(host, 'version')).body, 'one');
    const workerPid = Number((await call(host, 'pid')).body);

    writeVersion(dir, 'two');
    const restarted = await post('host/restart');
    assert.equal(restarted.status, 200, restarted.body);
    const after = JSON.parse(restarted.json.output);
    assert.equal(after.config.port, hostStatus.config.port);
    assert.notEqual(after.codeVersion, hostStatus.codeVersion);
    assert.equal((await call(host, 'version')).body, 'two');
    assert.notEqual(Number((await call(host, 'pid')).body), workerPid);

    fs.appendFileSync(config, "\nthrow new Error('broken on purpose');\n");
    const failed = await post('host/restart');
    assert.equal(failed.status, 500);
    assert.match(failed.body, /failed to reload: .*broken on purpose.*It keeps serving the code it had loaded/);
    assert.equal((await call(host, 'version')).body, 'two');
    await post('host/stop');
  });
});
