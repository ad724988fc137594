'use strict';

// The per-connection limits: config values, the http.Server they set, and a
// client that pipelines without reading (in-process host on port 0).

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, test } = require('node:test');
const { ConfigError } = require('../lib/config');
const { DEFAULTS } = require('../lib/connections');
const { Host } = require('../lib/host');

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
