'use strict';

// The per-connection limits: config values, the http.Server they set, and a
// client that pipelines without reading (in-process host on port 0; for the
// memory it costs, real processes: a host and a pool's master).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { describe, test } = require('node:test');
const { ConfigError } = require('../lib/config');
const { DEFAULTS } = require('../lib/connections');
const { Host } = require('../lib/host');
const { call, sleep, startServer, waitFor, writeConfig } = require('./helpers');

const functions = {
  echo: (data, cb) => cb(null, data),
  big: (data, cb) => cb(null, 'x'.repeat(64 * 1024 * 1024)),
};

function listening(t, config) {
  const host = new Host({ functions, silent: true, port: 0, ...config });
  t.after(() => new Promise((resolve) => host.close(resolve)));
  return new Promise((resolve, reject) => host.listen((err) => (err ? reject(err) : resolve(host))));
}

describe('connection limits', () => {
  test('defaults set the http.Server, and /status shows what js-host 0.11 shows', () => {
    const host = new Host({ functions: {} });
    assert.equal(host.server.headersTimeout, DEFAULTS.headersTimeout);
    assert.equal(host.server.requestTimeout, DEFAULTS.requestTimeout);
    assert.equal(host.server.keepAliveTimeout, DEFAULTS.keepAliveTimeout);
    assert.equal(host.server.timeout, DEFAULTS.sendTimeout);
    assert.deepEqual(Object.keys(host.getStatus().config), ['functions', 'address', 'port', 'requestDataLimit']);
  });

  test('config properties override them and show in /status like any property', () => {
    const config = { functions: {}, headersTimeout: 2000, requestTimeout: 0, keepAliveTimeout: 1000, sendTimeout: 0 };
    const host = new Host(config);
    assert.equal(host.server.headersTimeout, 2000);
    assert.equal(host.server.requestTimeout, 0);
    assert.equal(host.server.keepAliveTimeout, 1000);
    assert.equal(host.server.timeout, 0);
    assert.equal(host.getStatus().config.headersTimeout, 2000);
  });

  test('bad values are a ConfigError naming the property', () => {
    for (const [bad, message] of [
      [{ headersTimeout: 0 }, /headersTimeout must be a number of milliseconds \(at least 1\), not 0/],
      [{ requestTimeout: -1 }, /requestTimeout must be .* not -1/],
      [{ sendTimeout: '5s' }, /sendTimeout must be .* not "5s"/],
      [{ maxPipelinedRequests: 1.5 }, /maxPipelinedRequests must be a number of requests/],
      [{ headersTimeout: 9000, requestTimeout: 5000 }, /headersTimeout \(9000\) must not exceed requestTimeout \(5000\)/],
    ]) {
      assert.throws(() => new Host({ functions: {}, ...bad }), (err) => err instanceof ConfigError && message.test(err.message));
    }
  });

  test('a client pipelining more than maxPipelinedRequests unread requests is disconnected', async (t) => {
    const host = await listening(t, { maxPipelinedRequests: 4 });
    // The host's side of the connection closes (the client, paused, would not notice).
    const closed = new Promise((resolve) => host.server.once('connection', (s) => s.on('close', resolve)));
    const socket = net.connect(host.config.port, '127.0.0.1');
    t.after(() => socket.destroy());
    socket.pause(); // never reads
    socket.on('error', () => {});
    socket.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(50));
    await closed;
    // Others are still served.
    const answer = await fetch(`http://127.0.0.1:${host.config.port}/status`);
    assert.equal(answer.status, 200);
  });

  test('four pipelined requests within the bound are all answered', async (t) => {
    const host = await listening(t, { maxPipelinedRequests: 4 });
    const socket = net.connect(host.config.port, '127.0.0.1');
    t.after(() => socket.destroy());
    let text = '';
    const answered = new Promise((resolve) => {
      socket.on('data', (chunk) => {
        text += chunk;
        if ((text.match(/HTTP\/1\.1 200 OK/g) || []).length === 4) resolve();
      });
    });
    socket.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(4));
    await answered;
  });

  test('a client that stops taking its answer is disconnected after sendTimeout', async (t) => {
    const host = await listening(t, { sendTimeout: 500 });
    const closed = new Promise((resolve) => host.server.once('connection', (s) => s.on('close', resolve)));
    const socket = net.connect(host.config.port, '127.0.0.1');
    t.after(() => socket.destroy());
    socket.pause(); // never reads: 64 MB overflow the kernel's buffers
    socket.on('error', () => {});
    socket.write('POST /function/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}');
    await closed;
  });
});

// Calls for 2 MB answers, 16 (maxPipelinedRequests) on each of 8 sockets that never read:
// 256 MB of answers if all were run at once, as they were. (maxQueue: on a pool of one
// worker, every call waits for it rather than getting a 503, which a kernel buffer takes whole.)
const BIG_CONFIG = `module.exports = {
  sendTimeout: 2000,
  maxQueue: 200,
  functions: { echo: (data, cb) => cb(null, data), big: (data, cb) => cb(null, 'x'.repeat(data.n)) },
};
`;
const SOCKETS = 8;
const PIPELINED = 16;
const ANSWER_BYTES = 2 * 1024 * 1024;
// What the host may grow by: a few answers a socket (the one it holds and its copy
// being written, garbage not yet collected), far from all of them (measured: ~50 MB).
const GROWTH_LIMIT_MB = 128;
const STUCK = /closed a connection from .*: it took none of its answers for 2000ms \(sendTimeout\)/g;

/** A process's resident memory now and its peak so far (Linux: VmRSS, VmHWM), in MB. */
function memoryMb(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)[1]) / 1024;
  return { rss: mb('VmRSS'), peak: mb('VmHWM') };
}

/** A socket that sends `count` calls for `bytes`-long answers at once and reads nothing until told. */
function pipelineUnread(t, port, count, bytes) {
  const body = JSON.stringify({ n: bytes });
  const one =
    'POST /function/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${body.length}\r\n\r\n${body}`;
  const socket = net.connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  socket.pause();
  socket.on('error', () => {});
  socket.write(one.repeat(count));
  const client = { received: 0, ended: new Promise((resolve) => socket.on('close', resolve)) };
  // Reads what the host sent, until the connection ends.
  client.read = () => {
    socket.on('data', (chunk) => {
      client.received += chunk.length;
    });
    socket.resume();
    return client.ended;
  };
  return client;
}

describe('clients that pipeline calls for big answers and never read them', () => {
  for (const [kind, args] of [
    ['host', []],
    ["pool's master", ['--workers', '1']],
  ]) {
    test(`a ${kind} holds about one answer a connection, answers others, and cuts them at sendTimeout`, async (t) => {
      const { config } = writeConfig(t, 'big.config.js', BIG_CONFIG);
      const host = await startServer(t, config, args);
      assert.equal((await call(host, 'echo', { warm: 1 })).status, 200);
      const before = memoryMb(host.child.pid).rss;
      const clients = [];
      for (let i = 0; i < SOCKETS; i += 1) clients.push(pipelineUnread(t, host.port, PIPELINED, ANSWER_BYTES));
      await sleep(1000); // the calls that will run have run: their answers wait for the clients
      const good = await call(host, 'echo', { good: 1 });
      assert.equal(good.status, 200);
      assert.deepEqual(JSON.parse(good.body), { good: 1 });
      const log = () => host.stdout + host.stderr;
      await waitFor(() => (log().match(STUCK) || []).length === SOCKETS, 15000, 'every socket closed at sendTimeout');
      const { peak } = memoryMb(host.child.pid);
      assert.ok(peak - before < GROWTH_LIMIT_MB, `grew from ${before.toFixed(0)} MB to ${peak.toFixed(0)} MB`);
      // The clients find their connections ended before the answers they asked for.
      await Promise.all(clients.map((client) => client.read()));
      for (const client of clients) assert.ok(client.received < PIPELINED * ANSWER_BYTES, `${client.received} bytes`);
    });
  }
});
