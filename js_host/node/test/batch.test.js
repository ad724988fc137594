'use strict';

// POST /batch: results in the jobs' order, each what the single call answers,
// one failing job failing only itself, the batch's limits, the Host check; on a
// pool, jobs spread over the workers. The same suite against the
// single-process host and a pool of 2 workers. No assertion on timings.

const assert = require('node:assert/strict');
const http = require('node:http');
const { before, after, describe, test } = require('node:test');
const { startServer, request, call, writeConfig, waitFor, sleep } = require('./helpers');

const CONFIG = `
const cached = (data, cb) => cb(null, 'cached ' + data.n);
cached.cacheControl = 'max-age=60';
module.exports = {
  functionTimeout: 300,
  maxBatchJobs: 8,
  requestDataLimit: '2kb',
  functions: {
    echo: (data, cb) => cb(null, data),
    pid: (data, cb) => cb(null, String(process.pid)),
    error: (data, cb) => setTimeout(() => cb(new Error('boom ' + data.n)), 1),
    never: () => {},
    slow: (data, cb) => setTimeout(() => cb(null, 'slow done'), data.ms),
    cached,
  },
};
`;

function job(name, data) {
  const body = typeof data === 'string' ? data : JSON.stringify(data);
  return { function: name, hash: 'not checked by the host', body };
}

function batch(host, jobs, headers = {}) {
  return request(`${host.url}/batch`, { method: 'POST', json: { jobs }, headers });
}

async function results(host, jobs) {
  const res = await batch(host, jobs);
  assert.equal(res.status, 200, res.body);
  assert.match(res.headers['content-type'], /^application\/json/);
  const { results: list } = JSON.parse(res.body);
  assert.equal(list.length, jobs.length);
  return list;
}

for (const workers of [undefined, 2]) describe(workers === undefined ? 'batch' : `batch (workers: ${workers})`, () => {
  const pool = workers !== undefined;
  let host;
  // One host for the file: node:test's `before` gets no context with after().
  const ctx = { cleanups: [], after: (fn) => ctx.cleanups.push(fn) };

  async function allReady() {
    if (!pool) return;
    await waitFor(
      async () => JSON.parse((await request(`${host.url}/status`)).body).workers.ready === workers,
      20000,
      `${workers} workers ready`,
    );
  }

  before(async () => {
    const { config } = writeConfig(ctx, 'batch.config.js', CONFIG);
    host = await startServer(ctx, config, pool ? ['--workers', String(workers)] : []);
    await allReady();
  });
  after(async () => {
    for (const fn of ctx.cleanups.reverse()) await fn();
  });

  test('results come in the jobs\' order, each what the single call answers', async () => {
    const jobs = [
      job('echo', { n: 1 }),
      job('cached', { n: 2 }),
      job('error', { n: 3 }),
      job('nope', {}),
      job('echo', 'not json'),
      job('echo', ''),
      job('echo', { n: 7, text: 'héllo ☃' }),
    ];
    const list = await results(host, jobs);
    for (let i = 0; i < jobs.length; i++) {
      const single = await request(`${host.url}/function/${jobs[i].function}`, {
        method: 'POST',
        body: jobs[i].body,
        headers: { 'content-type': 'application/json' },
      });
      const result = list[i];
      assert.equal(result.status, single.status, `job ${i}`);
      if (single.status === 500) assert.equal(result.body.split('\n')[0], single.body.split('\n')[0]);
      else assert.equal(result.body, single.body, `job ${i}`);
      assert.equal(result.headers['cache-control'], single.headers['cache-control'], `job ${i}`);
      assert.equal(result.headers['js-host-code-version'], single.headers['js-host-code-version'], `job ${i}`);
    }
    assert.deepEqual(
      list.map((r) => r.status),
      [200, 200, 500, 404, 400, 200, 200],
    );
    assert.equal(list[0].body, '{"n":1}');
    assert.equal(list[1].headers['cache-control'], 'max-age=60');
    assert.equal(list[2].body.split('\n')[0], 'Error: boom 3');
    assert.equal(list[5].body, '{}');
    assert.equal(JSON.parse(list[6].body).text, 'héllo ☃');
    assert.ok(list[0].headers['js-host-code-version']);
  });

  if (pool) {
    test('a batch uses both workers of the pool', async () => {
      await allReady();
      const list = await results(host, [job('pid', { n: 1 }), job('pid', { n: 2 }), job('pid', { n: 3 }), job('pid', { n: 4 })]);
      const pids = new Set(list.map((r) => r.body));
      assert.equal(pids.size, 2, `pids ${[...pids]}`);
      for (const pid of pids) assert.notEqual(Number(pid), host.child.pid);
    });
  }

  test('a job past its functionTimeout is a 504 result; the others are served', async () => {
    await allReady();
    const list = await results(host, [job('echo', { n: 1 }), job('never', {}), job('echo', { n: 3 })]);
    assert.deepEqual(
      list.map((r) => r.status),
      [200, 504, 200],
    );
    assert.match(list[1].body, /functionTimeout of 300ms/);
    assert.equal(list[2].body, '{"n":3}');
    // The host keeps serving (a pool replaced the worker it stopped).
    assert.equal((await call(host, 'echo', { after: true })).status, 200);
  });

  test('an empty batch has no results', async () => {
    assert.deepEqual(await results(host, []), []);
  });

  test('a malformed batch is a 400 saying what is wrong', async () => {
    const cases = [
      [{ body: 'not json' }, /not valid JSON/],
      [{ json: { work: [] } }, /a batch is \{"jobs"/],
      [{ json: { jobs: [job('echo', {}), 'echo'] } }, /job 1 of the batch is not an object/],
      [{ json: { jobs: [{ body: '{}' }] } }, /job 0 of the batch has no "function" name/],
      [{ json: { jobs: [{ function: 'echo', body: { n: 1 } }] } }, /job 0 .* "body" that is not a string/],
      [{ json: { jobs: Array.from({ length: 9 }, () => job('echo', {})) } }, /9 jobs, more than the host's maxBatchJobs of 8/],
    ];
    for (const [options, pattern] of cases) {
      const res = await request(`${host.url}/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        ...options,
      });
      assert.equal(res.status, 400, res.body);
      assert.match(res.body, pattern);
    }
  });

  test('a batch over requestDataLimit is a 413; GET is a 405', async () => {
    const res = await batch(host, [job('echo', { text: 'x'.repeat(3000) })]);
    assert.equal(res.status, 413);
    assert.match(res.body, /requestDataLimit of 2kb/);
    const get = await request(`${host.url}/batch`);
    assert.equal(get.status, 405);
    assert.match(get.body, /POST \/batch/);
  });

  test('each job is counted in /metrics as its single call; the batch echoes one X-Request-Id', async () => {
    const count = async (name, status) => {
      const text = (await request(`${host.url}/metrics`)).body;
      const line = text.split('\n').find((l) => l.startsWith(`js_host_calls_total{function="${name}",status="${status}"}`));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    const [echo, error] = [await count('echo', '200'), await count('error', '500')];
    const res = await batch(host, [job('echo', { n: 1 }), job('echo', { n: 2 }), job('error', { n: 3 })], {
      'X-Request-Id': 'page-42',
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['x-request-id'], 'page-42');
    assert.equal(await count('echo', '200'), echo + 2);
    assert.equal(await count('error', '500'), error + 1);
  });

  test('the Host header check applies to /batch', async () => {
    const res = await batch(host, [job('echo', {})], { host: 'evil.example' });
    assert.equal(res.status, 403);
    assert.match(res.body, /DNS rebinding/);
  });
});

describe('batch on a full pool', () => {
  test('a job that finds the queue full is a 503 result with Retry-After', async (t) => {
    const { config } = writeConfig(t, 'full.config.js', CONFIG.replace('functionTimeout: 300,', 'functionTimeout: 10000, workers: 1, maxQueue: 0,'));
    const host = await startServer(t, config);
    const status = async () => JSON.parse((await request(`${host.url}/status`)).body).workers;
    await waitFor(async () => (await status()).ready === 1, 20000, 'the worker ready');
    const running = call(host, 'slow', { ms: 1500 });
    await waitFor(async () => (await status()).busy === 1, 5000, 'a busy worker');
    const list = await results(host, [job('echo', { n: 1 }), job('echo', { n: 2 })]);
    assert.deepEqual(
      list.map((r) => r.status),
      [503, 503],
    );
    assert.equal(list[0].headers['retry-after'], '1');
    assert.match(list[0].body, /maxQueue/);
    assert.equal((await running).body, 'slow done');
    assert.deepEqual(
      (await results(host, [job('echo', { n: 3 }), job('echo', { n: 4 })])).map((r) => r.body),
      ['{"n":3}', '{"n":4}'],
    );
  });
});

// Attacks on /batch: an abandoned batch, batches crowding out single calls, long and
// forged function names. One pool host of 2 workers for them all.
describe('batch abuse (workers: 2)', () => {
  const ctx = { cleanups: [], after: (fn) => ctx.cleanups.push(fn) };
  let host;
  const status = async () => JSON.parse((await request(`${host.url}/status`)).body).workers;
  const idle = () => waitFor(async () => (await status()).busy === 0 && (await status()).queue === 0, 20000, 'an idle pool');
  const slowCalls = async () => {
    const text = (await request(`${host.url}/metrics`)).body;
    const line = text.split('\n').find((l) => l.startsWith('js_host_calls_total{function="slow",status="200"}'));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  before(async () => {
    const source = CONFIG.replace('functionTimeout: 300,', 'functionTimeout: 10000, maxQueue: 2,').replace('maxBatchJobs: 8,', 'maxBatchJobs: 40,');
    const { config } = writeConfig(ctx, 'abuse.config.js', source.replace("requestDataLimit: '2kb',", "requestDataLimit: '64kb',"));
    host = await startServer(ctx, config, ['--workers', '2']);
    await waitFor(async () => (await status()).ready === 2, 20000, '2 workers ready');
  });
  after(async () => {
    for (const fn of ctx.cleanups.reverse()) await fn();
  });

  test('a batch whose client has gone runs none of its jobs not yet started', async () => {
    const before = await slowCalls();
    const jobs = Array.from({ length: 30 }, () => job('slow', { ms: 200 }));
    const body = JSON.stringify({ jobs });
    const req = http.request(`${host.url}/batch`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
    req.on('error', () => {});
    req.end(body);
    await waitFor(async () => (await status()).busy === 2, 5000, 'both workers on the batch');
    req.destroy();
    await sleep(700); // past the jobs running when it went (200 ms each), and a few more
    await idle();
    const ran = (await slowCalls()) - before;
    assert.ok(ran >= 2 && ran <= 4, `the abandoned batch ran ${ran} of its 30 jobs; at most the 2 running and 2 more were expected`);
  });

  test('batches take no more than the workers: a single call arriving meanwhile is served', async () => {
    await idle();
    const jobs = Array.from({ length: 6 }, () => job('slow', { ms: 300 }));
    const a = results(host, jobs);
    const b = results(host, jobs);
    await waitFor(async () => (await status()).busy === 2, 5000, 'both workers on batches');
    // Without the host-wide share, the second batch's jobs filled the queue (maxQueue 2): 503.
    const single = await call(host, 'echo', { n: 1 });
    assert.equal(single.status, 200, single.body);
    for (const list of [await a, await b]) assert.deepEqual(list.map((r) => r.status), Array(6).fill(200));
  });

  test('one batch alone still uses every worker', async () => {
    await idle();
    const list = await results(host, Array.from({ length: 4 }, () => job('pid', {})));
    assert.equal(new Set(list.map((r) => r.body)).size, 2);
  });

  test('a function name longer than 256 characters is a 400 naming the limit', async () => {
    const res = await batch(host, [job('x'.repeat(257), {})]);
    assert.equal(res.status, 400);
    assert.match(res.body, /job 0 .*longer than 256 characters/);
    assert.equal((await results(host, [job('y'.repeat(256), {})]))[0].status, 404);
  });

  test('an unknown name longer than 100 characters is counted as (other) in /metrics', async () => {
    const name = `long_${'Q'.repeat(200)}`;
    assert.equal((await results(host, [job(name, {})]))[0].status, 404);
    const text = (await request(`${host.url}/metrics`)).body;
    assert.ok(!text.includes('QQQQQQQQQQ'), 'the long name is not a label');
    assert.match(text, /js_host_calls_total\{function="\(other\)",status="404"\} [1-9]/);
  });

  test('control characters in a name are escaped in the log line and the 404', async () => {
    const name = 'x\n2026-12-02T05:00:00.000Z - error: FORGED\r\u001b[31m\u2028';
    const [result] = await results(host, [job(name, {})]);
    assert.equal(result.status, 404);
    assert.equal(result.body, 'Not found. Unknown function "x\\x0a2026-12-02T05:00:00.000Z - error: FORGED\\x0d\\x1b[31m\\u2028"');
    await waitFor(async () => host.stdout.includes('FORGED'), 5000, 'the job logged');
    assert.ok(!/(^|\n)\S+Z - error: FORGED/.test(host.stdout), 'no forged line in the log');
    assert.ok(!host.stdout.includes('\u001b') && !host.stdout.includes('\u2028') && !host.stdout.includes('\r'));
    assert.match(host.stdout, /job 0 x\\x0a2026-12-02T05:00:00\.000Z - error: FORGED\\x0d\\x1b\[31m\\u2028 404/);
  });
});
