'use strict';

// The host over HTTP: js-host 0.11's answers, our additions, and bad input;
// the same suite against the single-process host and a pool of 2 workers.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { before, after, describe, test } = require('node:test');
const { FIXTURES, runCli, startServer, request, call, tempRuntimeDir, writeConfig } = require('./helpers');
const VERSION = require('../lib/version');

const CONFIG = path.join(FIXTURES, 'host.config.js');

for (const workers of [undefined, 2]) describe(workers === undefined ? 'host' : `host (workers: ${workers})`, () => {
  const pool = workers !== undefined;
  let host;
  let logfile;
  // One host for the whole file: node:test's `before` gets a context with after().
  const ctx = { cleanups: [], after: (fn) => ctx.cleanups.push(fn) };

  before(async () => {
    logfile = path.join(tempRuntimeDir(ctx), 'host.log');
    host = await startServer(ctx, CONFIG, ['--logfile', logfile, ...(pool ? ['--workers', String(workers)] : [])]);
  });
  after(async () => {
    for (const fn of ctx.cleanups.reverse()) await fn();
  });

  test('GET /status reports type, version and the serializable config', async () => {
    const res = await request(`${host.url}/status`);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^application\/json/);
    // The bare /status is the status line printed at start-up (the 2015 clients compare them);
    // /status?errors adds the host's last errors (none yet).
    const status = JSON.parse(res.body);
    assert.equal(status.lastErrors, undefined);
    const withErrors = JSON.parse((await request(`${host.url}/status?errors`)).body);
    assert.deepEqual(withErrors.lastErrors, []);
    if (pool) {
      // The workers section changes as they start and serve.
      const { workers: now, ...rest } = status;
      const { workers: then, ...printed } = host.status;
      assert.deepEqual(rest, printed);
      assert.equal(now.size, then.size);
    } else {
      assert.deepEqual(status, host.status);
    }
    assert.equal(status.type, 'Host');
    // "version" is the js-host protocol, which the 2015 clients check; "packageVersion" this release.
    assert.equal(status.version, '0.11.7');
    assert.equal(status.packageVersion, VERSION);
    assert.equal(status.config.address, '127.0.0.1');
    assert.equal(status.config.port, host.port);
    assert.equal(typeof status.config.port, 'number');
    assert.equal(status.config.requestDataLimit, '10mb');
    assert.deepEqual(status.config.extra, { nested: [1, 2] });
    assert.ok(status.config.functions.includes('echo'));
    for (const key of ['logger', 'silent', 'outputOnListen', 'disconnectTimeout']) assert.ok(!(key in status.config));
  });

  test('objects are sent as JSON, other outputs as strings', async () => {
    let res = await call(host, 'echo', { foo: 'bar', n: [1, 2] });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { foo: 'bar', n: [1, 2] });
    res = await call(host, 'hello', { name: 'Foo' });
    assert.equal(res.body, 'Hello, Foo!');
    res = await call(host, 'number');
    assert.equal(res.body, '42');
    res = await call(host, 'unicode');
    assert.equal(res.body, 'héllo ☃');
    assert.match(res.headers['content-type'], /charset=utf-8/);
  });

  test('the query string (the client hash) is ignored', async () => {
    const res = await request(`${host.url}/function/hello?hash=bc4919c6adf7168088eaea06e27a5b23f0f9f9da`, {
      method: 'POST',
      json: { name: 'Q' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'Hello, Q!');
  });

  test('a falsy output is an error', async () => {
    for (const value of [0, '', false, null]) {
      const res = await call(host, 'falsy', { value });
      assert.equal(res.status, 500);
      assert.match(res.body, /^Error: Function failed to provide valid output\. Provided: "/);
      // Why that is an error, and what to return instead.
      assert.match(res.body, /A falsy output .* is an error, as in js-host 0\.11: call back with a non-empty string or an object/);
    }
  });

  test('cb(err) gives 500 with the stack', async () => {
    let res = await call(host, 'error');
    assert.equal(res.status, 500);
    assert.match(res.body, /^Error: boom\n\s+at /);
    assert.match(res.body, /host\.config\.js/);
    res = await call(host, 'stringError');
    assert.equal(res.status, 500);
    assert.match(res.body, /^Error: a string\n/);
  });

  test('a synchronous throw gives 500 with the stack, and the host lives on', async () => {
    const res = await call(host, 'throws');
    assert.equal(res.status, 500);
    assert.match(res.body, /^Error: thrown synchronously\n\s+at /);
    assert.equal((await call(host, 'hello')).status, 200);
  });

  test('a callback called twice is logged, not fatal', async () => {
    const res = await call(host, 'twice');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'first');
    assert.equal((await call(host, 'hello')).status, 200);
    await waitForLog(logfile, /Function "twice" called its callback more than once/);
  });

  test('functions may return a Promise', async () => {
    let res = await call(host, 'promise', { number: 21 });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { doubled: 42 });
    res = await call(host, 'promiseReject');
    assert.equal(res.status, 500);
    assert.match(res.body, /^Error: rejected\n/);
    // An async function that resolves to undefined still uses its callback.
    res = await call(host, 'asyncCallback');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'called back late');
  });

  test('a function that never calls back gets 504 after functionTimeout', async () => {
    const res = await call(host, 'never');
    assert.equal(res.status, 504);
    assert.match(res.body, /"never"/);
    assert.match(res.body, /400ms/);
  });

  test('the context has name, host (logger, config), req and res (not in a pool)', async () => {
    const res = await call(host, 'context');
    assert.deepEqual(JSON.parse(res.body), {
      name: 'context',
      hasLogger: true,
      extra: { nested: [1, 2] },
      method: pool ? null : 'POST',
      hasRes: !pool,
    });
  });

  test('Cache-Control from config.cacheControl or the function property, on 200 only', async () => {
    let res = await call(host, 'render');
    assert.equal(res.headers['cache-control'], 'max-age=3600');
    res = await call(host, 'cached');
    assert.equal(res.headers['cache-control'], 'max-age=60');
    res = await call(host, 'echo', { a: 1 });
    assert.equal(res.headers['cache-control'], undefined);
  });

  test('unknown and non-own function names are 404', async () => {
    for (const name of ['nope', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const res = await call(host, name);
      assert.equal(res.status, 404, name);
      assert.equal(res.body, `Not found. Unknown function "${name}"`);
    }
    const res = await request(`${host.url}/nowhere`);
    assert.equal(res.status, 404);
  });

  test('invalid JSON -> 400, non-object JSON -> 400, empty body -> {}', async () => {
    const url = `${host.url}/function/echo`;
    let res = await request(url, { method: 'POST', body: '{bad', headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 400);
    assert.match(res.body, /not valid JSON/);
    for (const body of ['[1,2]', '"text"', '42', 'null']) {
      res = await request(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400, body);
      assert.match(res.body, /must be a JSON object/);
    }
    res = await request(url, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(res.body, '{}');
  });

  test('a body over requestDataLimit -> 413, by Content-Length or while reading', async () => {
    const big = JSON.stringify({ data: 'x'.repeat(11 * 1024 * 1024) });
    let res = await request(`${host.url}/function/echo`, { method: 'POST', body: big });
    assert.equal(res.status, 413);
    assert.match(res.body, /requestDataLimit of 10mb/);
    // Chunked: no Content-Length, the limit applies while reading.
    res = await new Promise((resolve, reject) => {
      const req = http.request(`${host.url}/function/echo`, { method: 'POST', agent: false }, (response) => {
        let text = '';
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode, body: text }));
      });
      req.on('error', reject);
      const chunk = 'x'.repeat(1024 * 1024);
      for (let i = 0; i < 11; i++) req.write(chunk);
      req.end();
    });
    assert.equal(res.status, 413);
    assert.equal((await call(host, 'hello')).status, 200);
  });

  test('GET on a function is refused', async () => {
    const res = await request(`${host.url}/function/echo`);
    assert.equal(res.status, 405);
  });

  test('Host header: loopback names and allowedHosts pass, others get 403', async () => {
    for (const name of [`127.0.0.1:${host.port}`, `localhost:${host.port}`, 'localhost', '127.1.2.3', `[::1]:${host.port}`, 'allowed.test:80']) {
      const res = await request(`${host.url}/status`, { headers: { host: name } });
      assert.equal(res.status, 200, name);
    }
    for (const name of ['evil.test', `evil.test:${host.port}`, 'localhost.evil.test', '127.0.0.1.evil.test']) {
      const res = await request(`${host.url}/status`, { headers: { host: name } });
      assert.equal(res.status, 403, name);
      assert.match(res.body, /DNS rebinding/);
    }
  });

  test('request lines and error stacks go to the logfile', async () => {
    await call(host, 'log', { marker: 'm-123' });
    await call(host, 'error');
    const text = await waitForLog(logfile, /custom log line m-123/);
    assert.match(text, /Host: POST \/function\/log 200 /);
    await waitForLog(logfile, /Host: function error produced an error Error: boom\n\s+at /);
  });
});

describe('host config', () => {
  test('requestDataLimit as a number of bytes, and Host check off on 0.0.0.0', async (t) => {
    const { config } = writeConfig(
      t,
      'small.config.js',
      `module.exports = {address: '0.0.0.0', requestDataLimit: 100, functions: {echo: (d, cb) => cb(null, d)}};`,
    );
    const host = await startServer(t, config);
    assert.equal(host.status.config.requestDataLimit, 100);
    let res = await call(host, 'echo', { a: 'x'.repeat(50) });
    assert.equal(res.status, 200);
    res = await call(host, 'echo', { a: 'x'.repeat(200) });
    assert.equal(res.status, 413);
    res = await request(`${host.url}/status`, { headers: { host: 'container-name:9009' } });
    assert.equal(res.status, 200);
  });
});

describe('host config hooks', () => {
  test('extendHost(host) may add functions; they are listed in /status and --config', async (t) => {
    const { config } = writeConfig(
      t,
      'extend.config.js',
      `module.exports = {
        functions: {a: (d, cb) => cb(null, 'a')},
        extendHost: function (host) {
          host.addFunction('added', function (data, cb) { cb(null, 'added ' + this.host.config.functions.a.name); });
        },
      };`,
    );
    const host = await startServer(t, config);
    assert.deepEqual(host.status.config.functions, ['a', 'added']);
    assert.ok(!('extendHost' in host.status.config));
    const res = await call(host, 'added');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'added a');
    const printed = JSON.parse(runCli([config, '--config']).stdout);
    assert.deepEqual(printed.config.functions, ['a', 'added']);
  });

  test('config.logger replaces the console; -l still gets every line', async (t) => {
    const { dir, config } = writeConfig(
      t,
      'logger.config.js',
      (folder) => `const fs = require('fs');
        const write = (level) => (message) =>
          fs.appendFileSync(${JSON.stringify(path.join(folder, 'custom.log'))}, level + ' ' + message + '\\n');
        module.exports = {
          logger: {info: write('INFO'), warn: write('WARN'), error: write('ERROR')},
          functions: {a: (d, cb) => cb(null, 'a')},
        };`,
    );
    const custom = path.join(dir, 'custom.log');
    const logfile = path.join(dir, 'file.log');
    const host = await startServer(t, config, ['-l', logfile]);
    assert.equal((await call(host, 'a')).status, 200);
    await waitForLog(custom, /INFO Host: POST \/function\/a 200/);
    await waitForLog(logfile, /info: Host: POST \/function\/a 200/);
    assert.ok(!('logger' in host.status.config));
  });
});

test('an uncaught exception: the stack goes to the logfile, the host exits 1', async (t) => {
  const { dir, config } = writeConfig(
    t,
    'async-throw.config.js',
    `module.exports = {functions: {later: (d, cb) => { cb(null, 'ok'); setTimeout(() => { throw new Error('async boom'); }, 10); }}};`,
  );
  const logfile = path.join(dir, 'host.log');
  const host = await startServer(t, config, ['-l', logfile]);
  assert.equal((await call(host, 'later')).status, 200);
  assert.deepEqual(await host.exited, { code: 1, signal: null });
  assert.match(fs.readFileSync(logfile, 'utf8'), /uncaught exception, exiting: Error: async boom\n\s+at /);
  assert.match(host.stderr, /async boom/);
});

async function waitForLog(file, pattern, timeout = 3000) {
  const deadline = Date.now() + timeout;
  let text = '';
  while (Date.now() < deadline) {
    text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (pattern.test(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  assert.fail(`${pattern} not found in ${file}:\n${text}`);
}

describe('js-host 0.11 log output', () => {
  test("the logfile has 0.11's call lines, written before the answer is sent", async (t) => {
    const { dir, config } = writeConfig(
      t,
      'lines.config.js',
      "module.exports = {functions: {echo: (d, cb) => cb(null, 'e'), oops: (d, cb) => cb(new Error('no'))}};",
    );
    const logfile = path.join(dir, 'host.log');
    const host = await startServer(t, config, ['-l', logfile]);
    for (let i = 0; i < 5; i += 1) {
      assert.equal((await call(host, 'echo')).status, 200);
      // Read at once, no waiting: one call at a time, its lines are on disk before its answer.
      const text = fs.readFileSync(logfile, 'utf8');
      assert.equal(text.split('info: Host: calling function echo\n').length - 1, i + 1, text);
      assert.equal(text.split('info: Host: function echo completed\n').length - 1, i + 1, text);
      assert.equal(text.split('info: Host: POST /function/echo 200').length - 1, i + 1, text);
    }
    assert.equal((await call(host, 'oops')).status, 500);
    const text = fs.readFileSync(logfile, 'utf8');
    assert.match(text, /info: Host: calling function oops\n.*error: Host: function oops produced an error Error: no\n/s);
    assert.ok(!text.includes('function oops completed'));
  });

  test('silent: a thrown error and an uncaught exception still print their stacks on stderr', async (t) => {
    const { config } = writeConfig(
      t,
      'silent.config.js',
      `module.exports = {silent: true, functions: {
        throws: () => { throw new Error('thrown boom'); },
        rejects: async () => { throw new Error('rejected boom'); },
        fails: (d, cb) => cb(new Error('called back boom')),
        later: (d, cb) => { cb(null, 'ok'); setTimeout(() => { throw new Error('async boom'); }, 10); },
      }};`,
    );
    const host = await startServer(t, config);
    assert.equal((await call(host, 'throws')).status, 500);
    assert.equal((await call(host, 'rejects')).status, 500);
    assert.equal((await call(host, 'fails')).status, 500);
    assert.equal((await call(host, 'later')).status, 200);
    assert.deepEqual(await host.exited, { code: 1, signal: null });
    assert.match(host.stderr, /Host: function throws produced an error Error: thrown boom\n\s+at /);
    assert.match(host.stderr, /Host: function rejects produced an error Error: rejected boom\n\s+at /);
    assert.match(host.stderr, /uncaught exception, exiting: Error: async boom\n\s+at /);
    // An error passed to the callback is the function's answer, not a crash: 0.11 kept it quiet too.
    assert.ok(!host.stderr.includes('called back boom'), host.stderr);
    assert.ok(!host.stderr.includes('calling function'), host.stderr);
  });
});
