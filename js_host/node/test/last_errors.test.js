'use strict';

// /status?errors "lastErrors" and the caller's data: any local user can ask a host's port,
// and an error's text quotes what the call was given. By default an entry names the call
// (time, function, status, request id, kind) and leaves its text to the logfile; the
// config's lastErrorMessages: true adds the first line. Both kinds of host, a single call
// and a batch's job, and on a pool a worker that dies of the call.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const { startServer, request, call, writeConfig, waitFor } = require('./helpers');
const { errorKind } = require('../lib/last_errors');

// Another caller's data, as a function's error quotes it.
const CARD = '4111-1111-1111-1111';
const config = (props) => `
module.exports = {
  ${props}
  functions: {
    charge: (data) => { throw new TypeError('card ' + data.card + ' declined'); },
    crash: (data) => { setTimeout(() => { throw new Error('card ' + data.card + ' crashed'); }, 1); },
  },
};
`;

/** A host of `config` logging JSON lines, ready to call: {host, logfile}. */
async function startHost(t, source, workers) {
  const { dir, config: file } = writeConfig(t, 'errors.config.js', source);
  const logfile = path.join(dir, 'host.log');
  const args = ['--logfile', logfile, '--log-format', 'json', ...(workers > 0 ? ['--workers', String(workers)] : [])];
  const host = await startServer(t, file, args);
  await waitFor(async () => (await request(`${host.url}/health`)).status === 200, 20000, 'a worker ready');
  return { host, logfile };
}

/** The failed calls: one call, one batch's job and, on a pool, a crash; then /status?errors. */
async function failCalls(host, pool) {
  const ids = [(await call(host, 'charge', { card: CARD })).headers['x-request-id']];
  const jobs = [{ function: 'charge', body: JSON.stringify({ card: CARD }) }];
  const batch = await request(`${host.url}/batch`, { method: 'POST', json: { jobs }, headers: { 'X-Request-Id': 'batch-1' } });
  assert.equal(JSON.parse(batch.body).results[0].status, 500);
  ids.push('batch-1');
  if (pool) {
    const crashed = await call(host, 'crash', { card: CARD });
    assert.equal(crashed.status, 500);
    ids.push(crashed.headers['x-request-id']);
  }
  return { ids, body: (await request(`${host.url}/status?errors`)).body };
}

for (const workers of [0, 1]) describe(workers === 0 ? 'single-process host' : 'pool of 1 worker', () => {
  const pool = workers > 0;
  const kinds = ['TypeError', 'TypeError', ...(pool ? ['worker died'] : [])];

  test('by default: the calls named, their texts only in the logfile', async (t) => {
    const { host, logfile } = await startHost(t, config(''), workers);
    const { ids, body } = await failCalls(host, pool);
    assert.ok(!body.includes(CARD), body);
    assert.doesNotMatch(body, /declined|crashed/);
    const { lastErrors } = JSON.parse(body);
    assert.deepEqual(
      lastErrors.map(({ function: name, status, requestId, kind }) => [name, status, requestId, kind]),
      ids.map((id, i) => [i === 2 ? 'crash' : 'charge', 500, id, kinds[i]]),
    );
    for (const error of lastErrors) assert.deepEqual(Object.keys(error), ['time', 'function', 'status', 'requestId', 'kind']);
    // Where the status screen sends a person: the logfile's lines of that request id.
    await waitFor(() => fs.readFileSync(logfile, 'utf8').includes('"status":500'), 5000, 'the lines on disk');
    const lines = fs.readFileSync(logfile, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    const ofCall = lines.filter((line) => line.request_id === ids[0]);
    assert.ok(ofCall.some((line) => line.message.includes(`TypeError: card ${CARD} declined`)), JSON.stringify(ofCall));
  });

  test('lastErrorMessages: true adds the first line of each', async (t) => {
    const { host } = await startHost(t, config('lastErrorMessages: true,'), workers);
    const { ids, body } = await failCalls(host, pool);
    const { lastErrors } = JSON.parse(body);
    assert.deepEqual(
      lastErrors.map((error) => error.requestId),
      ids,
    );
    assert.deepEqual(lastErrors.map((error) => error.kind), kinds);
    assert.equal(lastErrors[0].message, `TypeError: card ${CARD} declined`);
    assert.equal(lastErrors[1].message, `TypeError: card ${CARD} declined`);
    if (pool) assert.match(lastErrors[2].message, new RegExp(`threw an uncaught exception: Error: card ${CARD} crashed`));
    for (const error of lastErrors) assert.deepEqual(Object.keys(error), ['time', 'function', 'status', 'requestId', 'kind', 'message']);
  });

  test('a lastErrorMessages that is not a boolean is refused, naming it', async (t) => {
    const { config: file } = writeConfig(t, 'bad.config.js', config("lastErrorMessages: 'yes',"));
    const refused = await startServer(t, file, pool ? ['--workers', '1'] : []).catch((err) => err);
    assert.match(String(refused), /lastErrorMessages must be true .* or false .*, not "yes"/);
  });
});

test("errorKind: an error's name as its stack begins, or what the host made of the call", () => {
  assert.equal(errorKind(500, `TypeError: card ${CARD} declined`), 'TypeError');
  assert.equal(errorKind(500, 'Error'), 'Error');
  assert.equal(errorKind(500, 'TypeError [ERR_INVALID_ARG_TYPE]: The "path" argument'), 'TypeError [ERR_INVALID_ARG_TYPE]');
  // A first line that is not `<name>: ...` (a stack the function wrote, a thrown card) is no kind.
  assert.equal(errorKind(500, `${CARD}: declined`), null);
  assert.equal(errorKind(500, `card ${CARD}`), null);
  assert.equal(errorKind(504, 'Gateway timeout: Function "x" did not complete within the functionTimeout of 5ms'), 'timeout');
  const died = 'Function "x" failed: the worker running it ran out of memory (its heap limit is maxWorkerMemory, 64MB).';
  assert.equal(errorKind(500, died), 'worker died');
  assert.equal(errorKind(500, 'Function "x" failed: the host is stopping'), 'host stopping');
  assert.equal(errorKind(503, 'Function "x" was not run: the host is stopping'), 'host stopping');
  assert.equal(errorKind(503, 'Service unavailable: all 2 workers are busy and 4 calls already wait (maxQueue); ...'), 'queue full');
  assert.equal(errorKind(503, 'TypeError: not a 500'), null);
});
