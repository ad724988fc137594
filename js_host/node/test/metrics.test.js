'use strict';

// What a host tells about itself: GET /metrics (Prometheus text), /status?errors "lastErrors"
// (their texts, opted into or not: last_errors.test.js), X-Request-Id and the JSON log
// lines. One host of each kind (single process, a pool of 2 workers) gets a known sequence
// of calls; its counters must equal it exactly.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { before, after, describe, test } = require('node:test');
const { startServer, request, call, writeConfig, waitFor, isAlive } = require('./helpers');
const { HostMetrics, LAST_ERRORS, MAX_UNKNOWN_NAMES, OTHER_NAME } = require('../lib/host_metrics');
const { Registry, escapeLabelValue } = require('../lib/metrics');
const { requestIdFrom } = require('../lib/request_id');

const FUNCTIONS = `
module.exports = {
  functionTimeout: 1000,
  maxQueue: 0,
  functions: {
    echo: (data, cb) => cb(null, data),
    fail: (data, cb) => cb(new Error('failed on purpose\\nsecond line')),
    never: () => {},
    loop: () => { for (;;) {} },
    crash: () => { setTimeout(() => { throw new Error('crashed on purpose'); }, 1); },
    // Answers once the file data.release exists.
    hold: (data, cb) => {
      const check = () => (require('fs').existsSync(data.release) ? cb(null, 'released') : setTimeout(check, 10));
      check();
    },
  },
};
`;
// A 404 whose name needs every escape of a label value: a quote, a backslash, a line feed.
const ODD_NAME = 'odd"na\\me\nx';
const ECHOES = 5;
const HEX_ID = /^[0-9a-f]{32}$/;

/** The samples of a metrics text, checked line by line against the format (0.0.4). */
function parseMetrics(text) {
  assert.ok(text.endsWith('\n'), 'the text ends with a line feed');
  const types = new Map();
  const helps = new Set();
  const samples = [];
  for (const line of text.slice(0, -1).split('\n')) {
    let match = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (match) {
      const [, kind, name, rest] = match;
      if (kind === 'HELP') {
        assert.ok(!helps.has(name), `one HELP for ${name}`);
        helps.add(name);
      } else {
        assert.ok(!types.has(name), `one TYPE for ${name}`);
        assert.ok(['counter', 'gauge', 'histogram'].includes(rest), line);
        types.set(name, rest);
      }
      continue;
    }
    match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText = '', valueText] = match;
    const labels = {};
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
    while (pair.lastIndex < labelText.length) {
      const m = pair.exec(labelText);
      assert.ok(m, `labels of ${JSON.stringify(line)}`);
      labels[m[1]] = m[2].replace(/\\([\\"n])/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(family), `${name} comes after the TYPE of its family`);
    const value = valueText === 'NaN' ? NaN : valueText === '+Inf' ? Infinity : Number(valueText);
    assert.ok(!Number.isNaN(value) || valueText === 'NaN', line);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

/** Samples of `name` whose labels include `labels`. */
function find(parsed, name, labels = {}) {
  return parsed.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function value(parsed, name, labels) {
  const found = find(parsed, name, labels);
  assert.equal(found.length, 1, `one sample ${name} ${JSON.stringify(labels)}: ${JSON.stringify(found)}`);
  return found[0].value;
}

async function scrape(host) {
  const res = await request(`${host.url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parseMetrics(res.body);
}

async function getStatus(host) {
  return JSON.parse((await request(`${host.url}/status?errors`)).body);
}

/** The JSON log lines of a logfile, every one parsed (a line that does not parse fails). */
function jsonLines(file) {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line));
}

for (const workers of [0, 2]) describe(workers === 0 ? 'single-process host' : `pool of ${workers} workers`, () => {
  const pool = workers > 0;
  const ctx = { cleanups: [], after: (fn) => ctx.cleanups.push(fn) };
  let host;
  let logfile;
  const answers = {};
  // The sequence every check below counts on.
  const expected = { echo: { 200: ECHOES + 1 }, fail: { 500: 1 }, [ODD_NAME]: { 404: 1 } };

  before(async () => {
    const { dir, config } = writeConfig(ctx, 'metrics.config.js', FUNCTIONS);
    logfile = path.join(dir, 'host.log');
    const args = ['--logfile', logfile, '--log-format', 'json', ...(pool ? ['--workers', String(workers)] : [])];
    host = await startServer(ctx, config, args);
    if (pool) await waitFor(async () => (await getStatus(host)).workers.ready === workers, 20000, 'workers ready');

    answers.given = await call(host, 'echo', { i: 0 }, { 'X-Request-Id': 'client-id:1.a_b-c' });
    answers.invalid = await call(host, 'echo', { i: 1 }, { 'X-Request-Id': 'not valid!' });
    answers.absent = await call(host, 'echo', { i: 2 });
    for (let i = 3; i < ECHOES; i++) assert.equal((await call(host, 'echo', { i })).status, 200);
    // One more echo, as a batch's job: its lines carry the batch's request id.
    const jobs = [{ function: 'echo', body: JSON.stringify({ i: 'batch' }) }];
    answers.batch = await request(`${host.url}/batch`, { method: 'POST', json: { jobs }, headers: { 'X-Request-Id': 'batch-id:1' } });
    answers.fail = await call(host, 'fail');
    answers.odd = await call(host, encodeURIComponent(ODD_NAME));
    if (pool) {
      answers.timeout = await call(host, 'loop');
      expected.loop = { 504: 1 };
      answers.crash = await call(host, 'crash');
      expected.crash = { 500: 1 };
      await waitFor(async () => (await getStatus(host)).workers.ready === workers, 20000, 'workers replaced');
      // Both workers busy and maxQueue 0: one more call is refused.
      const release = path.join(dir, 'release');
      const held = [call(host, 'hold', { release }), call(host, 'hold', { release })];
      await waitFor(async () => value(await scrape(host), 'js_host_workers', { state: 'busy' }) === 2, 5000, 'both busy');
      answers.busy = await call(host, 'echo', { i: 'refused' });
      fs.writeFileSync(release, '');
      for (const res of await Promise.all(held)) assert.equal(res.status, 200);
      expected.hold = { 200: 2 };
      expected.echo[503] = 1;
    } else {
      answers.timeout = await call(host, 'never');
      expected.never = { 504: 1 };
    }
  });
  after(async () => {
    for (const fn of ctx.cleanups.reverse()) await fn();
  });

  test('the answers of the sequence', () => {
    assert.equal(answers.batch.status, 200);
    assert.equal(JSON.parse(answers.batch.body).results[0].status, 200);
    assert.equal(answers.fail.status, 500);
    assert.equal(answers.odd.status, 404);
    assert.equal(answers.timeout.status, 504);
    if (pool) {
      assert.equal(answers.crash.status, 500);
      assert.equal(answers.busy.status, 503);
    }
  });

  test('calls counted exactly once by function and status; durations per function', async () => {
    const metrics = await scrape(host);
    const counted = {};
    for (const sample of find(metrics, 'js_host_calls_total')) {
      const { function: name, status } = sample.labels;
      counted[name] = { ...counted[name], [status]: sample.value };
    }
    assert.deepEqual(counted, expected);
    assert.equal(metrics.types.get('js_host_calls_total'), 'counter');
    assert.equal(metrics.types.get('js_host_call_duration_seconds'), 'histogram');
    // Every answer but the 404s is in its function's histogram.
    for (const [name, statuses] of Object.entries(expected)) {
      const count = Object.entries(statuses).reduce((sum, [status, n]) => sum + (status === '404' ? 0 : n), 0);
      const labels = { function: name };
      if (count === 0) {
        assert.equal(find(metrics, 'js_host_call_duration_seconds_count', labels).length, 0, name);
        continue;
      }
      assert.equal(value(metrics, 'js_host_call_duration_seconds_count', labels), count, name);
      const buckets = find(metrics, 'js_host_call_duration_seconds_bucket', labels);
      assert.deepEqual(
        buckets.map((b) => b.labels.le),
        ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf'],
      );
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative');
      assert.equal(buckets.at(-1).value, count);
      assert.ok(value(metrics, 'js_host_call_duration_seconds_sum', labels) > 0);
    }
    // The call stopped at the functionTimeout of 1000ms took at least that long.
    const timedOut = pool ? 'loop' : 'never';
    assert.equal(value(metrics, 'js_host_call_duration_seconds_bucket', { function: timedOut, le: '0.5' }), 0);
  });

  test('the event loop delay; with a pool its queue, workers, restarts and heaps', async () => {
    const metrics = await scrape(host);
    for (const quantile of ['0.5', '0.99']) {
      const delay = value(metrics, 'js_host_event_loop_delay_seconds', { quantile });
      assert.ok(delay >= 0 && delay < 60, `delay ${delay}`);
    }
    if (!pool) {
      assert.equal(find(metrics, 'js_host_workers').length, 0);
      return;
    }
    assert.equal(value(metrics, 'js_host_queue_length'), 0);
    assert.equal(value(metrics, 'js_host_workers', { state: 'busy' }), 0);
    assert.equal(value(metrics, 'js_host_workers', { state: 'idle' }), workers);
    const restarts = Object.fromEntries(find(metrics, 'js_host_worker_restarts_total').map((s) => [s.labels.cause, s.value]));
    assert.deepEqual(restarts, { timeout: 1, uncaughtException: 1 });
    assert.deepEqual(restarts, (await getStatus(host)).workers.restarts);
    const heaps = find(metrics, 'js_host_worker_heap_used_bytes');
    assert.equal(heaps.length, workers, JSON.stringify(heaps));
    for (const heap of heaps) {
      assert.ok(isAlive(Number(heap.labels.worker)), `worker ${heap.labels.worker} is a live process`);
      assert.ok(heap.value > 0);
    }
  });

  test('/status?errors lastErrors: the 5xx answers, oldest first, each its request id and kind, no text', async () => {
    const answer = await request(`${host.url}/status?errors`);
    const { lastErrors } = JSON.parse(answer.body);
    // The bare /status never carries them (the proxy forwards it to any client).
    assert.equal(JSON.parse((await request(`${host.url}/status`)).body).lastErrors, undefined);
    const seen = lastErrors.map(({ function: name, status, kind }) => [name, status, kind]);
    const timedOut = pool ? 'loop' : 'never';
    const want = [['fail', 500, 'Error'], [timedOut, 504, 'timeout']];
    if (pool) want.push(['crash', 500, 'worker died'], ['echo', 503, 'queue full']);
    assert.deepEqual(seen, want);
    const failed = [answers.fail, answers.timeout, ...(pool ? [answers.crash, answers.busy] : [])];
    assert.deepEqual(
      lastErrors.map((error) => error.requestId),
      failed.map((res) => res.headers['x-request-id']),
    );
    for (const error of lastErrors) {
      assert.deepEqual(Object.keys(error), ['time', 'function', 'status', 'requestId', 'kind']);
      assert.equal(new Date(error.time).toISOString(), error.time);
    }
    // None of the answers' texts: without lastErrorMessages they stay in the logfile.
    assert.doesNotMatch(JSON.stringify(lastErrors), /on purpose|did not complete|Gateway|busy|exception/);
  });

  test('X-Request-Id: a valid one echoed, an invalid or absent one replaced by a new one', () => {
    assert.equal(answers.given.headers['x-request-id'], 'client-id:1.a_b-c');
    assert.match(answers.invalid.headers['x-request-id'], HEX_ID);
    assert.match(answers.absent.headers['x-request-id'], HEX_ID);
    assert.notEqual(answers.invalid.headers['x-request-id'], answers.absent.headers['x-request-id']);
    for (const name of ['fail', 'odd', 'timeout']) assert.match(answers[name].headers['x-request-id'], HEX_ID, name);
    if (pool) assert.match(answers.busy.headers['x-request-id'], HEX_ID);
  });

  test('JSON log lines: each one an object; a call followed by its request id', async () => {
    await waitFor(() => fs.readFileSync(logfile, 'utf8').includes('"status":504'), 5000, 'the lines on disk');
    const lines = jsonLines(logfile);
    for (const line of lines) {
      assert.equal(typeof line.message, 'string');
      assert.ok(['info', 'warn', 'error'].includes(line.level), JSON.stringify(line));
      assert.equal(new Date(line.time).toISOString(), line.time);
    }
    assert.ok(lines.some((line) => line.message.startsWith('Host listening at ')));
    if (pool) assert.ok(lines.some((line) => / ready \(code version /.test(line.message) && Number.isInteger(line.worker)));

    const ofCall = lines.filter((line) => line.request_id === 'client-id:1.a_b-c');
    assert.deepEqual(
      ofCall.map((line) => line.message.replace(/ [\d.]+ms$/, '')),
      ['Host: calling function echo', 'Host: function echo completed', 'Host: POST /function/echo 200'],
    );
    const workerPids = new Set(ofCall.map((line) => line.worker));
    assert.equal(workerPids.size, 1, 'one worker ran it');
    if (pool) assert.ok(Number.isInteger(ofCall[0].worker));
    else assert.equal(ofCall[0].worker, null);
    const ofBatch = lines.filter((line) => line.request_id === 'batch-id:1');
    assert.deepEqual(
      ofBatch.map((line) => line.message.replace(/ [\d.]+ms$/, '')),
      ['Host: calling function echo', 'Host: function echo completed', 'Host: /batch job 0 echo 200'],
    );
    const answered = ofCall.at(-1);
    assert.equal(answered.function, 'echo');
    assert.equal(answered.status, 200);
    assert.equal(typeof answered.duration_ms, 'number');

    const failed = lines.filter((line) => line.request_id === answers.fail.headers['x-request-id']);
    const error = failed.find((line) => line.level === 'error');
    assert.match(error.message, /^Host: function fail produced an error Error: failed on purpose\nsecond line\n\s+at /);
    assert.equal(error.status, 500);
    const timedOut = lines.filter((line) => line.request_id === answers.timeout.headers['x-request-id']);
    assert.ok(timedOut.some((line) => line.level === 'error' && line.status === 504), JSON.stringify(timedOut));
    if (pool) {
      const crashed = lines.filter((line) => line.request_id === answers.crash.headers['x-request-id']);
      assert.ok(crashed.some((line) => /threw an uncaught exception while running function "crash"/.test(line.message)));
    }
  });

  test('/metrics: GET and HEAD only, behind the same Host check', async () => {
    assert.equal((await request(`${host.url}/metrics`, { method: 'POST' })).status, 405);
    assert.equal((await request(`${host.url}/metrics`, { method: 'HEAD' })).status, 200);
    const rebound = await request(`${host.url}/metrics`, { headers: { host: 'attacker.example' } });
    assert.equal(rebound.status, 403);
    assert.match(rebound.body, /DNS rebinding/);
  });
});

test('the text log format names the request id in the request line, and stays 0.11 otherwise', async (t) => {
  const { dir, config } = writeConfig(t, 'text.config.js', FUNCTIONS);
  const logfile = path.join(dir, 'host.log');
  const host = await startServer(t, config, ['--logfile', logfile]);
  assert.equal((await call(host, 'echo', {}, { 'x-request-id': 'abc' })).headers['x-request-id'], 'abc');
  const text = fs.readFileSync(logfile, 'utf8');
  assert.match(text, /Z - info: Host: calling function echo\n.*Z - info: Host: function echo completed\n/s);
  assert.match(text, /Z - info: Host: POST \/function\/echo 200 [\d.]+ms request_id=abc\n/);
});

test('logFormat in the config; a bad value is refused naming it', async (t) => {
  const { dir, config } = writeConfig(t, 'json.config.js', FUNCTIONS.replace('maxQueue: 0,', "logFormat: 'json',"));
  const logfile = path.join(dir, 'host.log');
  const host = await startServer(t, config, ['--logfile', logfile]);
  await call(host, 'echo');
  assert.ok(jsonLines(logfile).some((line) => line.function === 'echo' && line.status === 200));
  const bad = writeConfig(t, 'bad.config.js', "module.exports = { logFormat: 'xml', functions: {} };");
  const refused = await startServer(t, bad.config).catch((err) => err);
  assert.match(String(refused), /logFormat must be 'text' .* or 'json' .*, not "xml"/);
});

describe('lib/metrics.js, lib/host_metrics.js, lib/request_id.js', () => {
  test('HELP, TYPE, labels escaped, histogram buckets cumulative with le last', () => {
    const registry = new Registry();
    const counter = registry.counter('a_total', 'A help with a \\ and a\nline feed', ['x', 'y']);
    counter.inc(['q"uote', 'back\\slash\nnl']);
    counter.inc(['q"uote', 'back\\slash\nnl'], 2);
    registry.gauge('g', 'G').set([], NaN);
    const histogram = registry.histogram('h_seconds', 'H', ['f'], [0.1, 1]);
    histogram.observe(['x'], 0.1);
    histogram.observe(['x'], 0.5);
    histogram.observe(['x'], 7);
    assert.equal(
      registry.render(),
      [
        '# HELP a_total A help with a \\\\ and a\\nline feed',
        '# TYPE a_total counter',
        'a_total{x="q\\"uote",y="back\\\\slash\\nnl"} 3',
        '# HELP g G',
        '# TYPE g gauge',
        'g NaN',
        '# HELP h_seconds H',
        '# TYPE h_seconds histogram',
        'h_seconds_bucket{f="x",le="0.1"} 1',
        'h_seconds_bucket{f="x",le="1"} 2',
        'h_seconds_bucket{f="x",le="+Inf"} 3',
        'h_seconds_sum{f="x"} 7.6',
        'h_seconds_count{f="x"} 3',
        '',
      ].join('\n'),
    );
    assert.equal(escapeLabelValue('a\\"\n'), 'a\\\\\\"\\n');
    assert.throws(() => registry.counter('a_total', 'again'), /registered twice/);
    assert.throws(() => registry.counter('bad-name', 'x'), /not a valid metric name/);
    assert.throws(() => counter.inc(['only one']), /takes 2 label values/);
  });

  test('HostMetrics: made-up names bounded, lastErrors bounded, 404s out of the histogram', () => {
    const metrics = new HostMetrics();
    for (let i = 0; i < MAX_UNKNOWN_NAMES + 5; i++) metrics.recordCall(`made-up-${i}`, 404, 0.001, 'Not found');
    metrics.recordCall('known', 200, 0.002, 'ok');
    metrics.recordCall('made-up-0', 404, 0.001, 'Not found');
    const parsed = parseMetrics(metrics.render());
    const calls = find(parsed, 'js_host_calls_total');
    assert.equal(calls.length, MAX_UNKNOWN_NAMES + 2);
    assert.equal(value(parsed, 'js_host_calls_total', { function: OTHER_NAME, status: '404' }), 5);
    assert.equal(value(parsed, 'js_host_calls_total', { function: 'made-up-0', status: '404' }), 2);
    assert.deepEqual(
      find(parsed, 'js_host_call_duration_seconds_count').map((s) => s.labels.function),
      ['known'],
    );
    for (let i = 0; i < LAST_ERRORS + 3; i++) metrics.recordCall('known', 500, 0.001, `Error: number ${i}\n    at x`, `id-${i}`);
    assert.equal(metrics.lastErrors.length, LAST_ERRORS);
    assert.equal(metrics.lastErrors[0].requestId, 'id-3');
    assert.equal(metrics.lastErrors.at(-1).requestId, `id-${LAST_ERRORS + 2}`);
    assert.ok(metrics.lastErrors.every((error) => error.kind === 'Error' && !('message' in error)));
    // With the config's lastErrorMessages, the first line of each too, 500 characters at most.
    const withMessages = new HostMetrics({ errorMessages: true });
    for (let i = 0; i < LAST_ERRORS + 3; i++) withMessages.recordCall('known', 500, 0.001, `Error: number ${i}\n    at x`);
    assert.equal(withMessages.lastErrors.length, LAST_ERRORS);
    assert.equal(withMessages.lastErrors[0].message, 'Error: number 3');
    assert.equal(withMessages.lastErrors.at(-1).message, `Error: number ${LAST_ERRORS + 2}`);
    assert.equal(withMessages.lastErrors.at(-1).requestId, null);
    withMessages.recordCall('known', 500, 0.001, 'x'.repeat(2000));
    assert.equal(withMessages.lastErrors.at(-1).message.length, 500);
  });

  test("HostMetrics: a name the host has not is bounded whatever its answer (a pool's 503 before its workers)", () => {
    const names = new Set(['real']);
    const metrics = new HostMetrics({ isFunction: (name) => names.has(name) });
    for (let i = 0; i < MAX_UNKNOWN_NAMES + 5; i++) metrics.recordCall(`made-up-${i}`, i % 2 ? 503 : 413, 0.001, 'refused');
    metrics.recordCall('real', 503, 0.001, 'busy');
    const parsed = parseMetrics(metrics.render());
    assert.equal(find(parsed, 'js_host_calls_total').length, MAX_UNKNOWN_NAMES + 3);
    const other = find(parsed, 'js_host_calls_total').filter((s) => s.labels.function === OTHER_NAME);
    assert.equal(other.reduce((sum, s) => sum + s.value, 0), 5);
    assert.equal(value(parsed, 'js_host_calls_total', { function: 'real', status: '503' }), 1);
  });

  test('request ids: a token kept, anything else replaced', () => {
    assert.equal(requestIdFrom('Ab9._:-'), 'Ab9._:-');
    assert.equal(requestIdFrom('x'.repeat(128)), 'x'.repeat(128));
    for (const bad of [undefined, '', 'x'.repeat(129), 'a b', 'é', 'a\nb', '<script>']) assert.match(requestIdFrom(bad), HEX_ID);
    const ids = new Set(Array.from({ length: 600 }, () => requestIdFrom(undefined)));
    assert.equal(ids.size, 600);
  });
});
