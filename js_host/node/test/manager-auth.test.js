'use strict';

// The manager's challenge-response (lib/security.js): the proof it gives, and
// what a recorded or forged Authorization header gets (401, nothing started).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');
const { FIXTURES, checkChallenge, managerRequest, request, startServer, tempRuntimeDir } = require('./helpers');
const { Manager } = require('../lib/manager');
const runtime = require('../lib/runtime');
const security = require('../lib/security');
const { createSilent } = require('../lib/logger');

const CONFIG = path.join(FIXTURES, 'manager.config.js');
const HOST_CONFIG = path.join(FIXTURES, 'host.config.js');

async function startManager(t) {
  const runtimeDir = tempRuntimeDir(t);
  const manager = await startServer(t, CONFIG, ['--manager'], { runtimeDir });
  manager.runtimeDir = runtimeDir;
  manager.secretFile = path.join(runtimeDir, 'manager.secret');
  manager.secret = fs.readFileSync(manager.secretFile, 'utf8');
  return manager;
}

/** A manager in this process (its nonce store can be looked at), on port 0. */
async function inProcessManager(t) {
  const runtimeDir = tempRuntimeDir(t);
  const secret = runtime.getOrCreateSecret(runtimeDir);
  const manager = new Manager({ port: 0 }, { logger: createSilent(), runtimeDir, secret });
  await new Promise((resolve, reject) => manager.listen((err) => (err ? reject(err) : resolve())));
  t.after(() => new Promise((resolve) => manager.stop(resolve)));
  manager.url = `http://127.0.0.1:${manager.config.port}`;
  return manager;
}

function nonce() {
  return crypto.randomBytes(32).toString('hex');
}

async function challenge(url, target = '/status', method = 'GET') {
  const clientNonce = nonce();
  const res = await request(`${url}${target}`, { method, headers: { [security.CHALLENGE_HEADER]: clientNonce } });
  return { res, clientNonce };
}

function signed(secret, serverNonce, method, target, body) {
  const mac = security.requestMac(secret, serverNonce, method, target, Buffer.from(body));
  return `${security.AUTH_SCHEME} nonce="${serverNonce}", mac="${mac}"`;
}

async function hostStarted(manager) {
  const res = await managerRequest(manager.url, manager.secret, '/host/status', { method: 'POST', json: { config: HOST_CONFIG } });
  return res.json.started;
}

describe('manager challenge-response', () => {
  test('a challenge gets a fresh nonce and the proof that the manager knows the secret', async (t) => {
    const manager = await startManager(t);
    const first = await challenge(manager.url);
    assert.equal(first.res.status, 401);
    assert.ok(first.res.body.includes(manager.secretFile), first.res.body);
    const serverNonce = checkChallenge(first.res, manager.secret, first.clientNonce);
    assert.match(serverNonce, /^[0-9a-f]{64}$/);
    // Another secret, or the proof checked for another client nonce: no match.
    assert.ok(checkChallenge(first.res, 'ab'.repeat(32), first.clientNonce) instanceof Error);
    assert.ok(checkChallenge(first.res, manager.secret, nonce()) instanceof Error);
    const second = await challenge(manager.url);
    assert.notEqual(checkChallenge(second.res, manager.secret, second.clientNonce), serverNonce);
    // No challenge header, or a malformed one: 401 without a nonce.
    for (const headers of [{}, { [security.CHALLENGE_HEADER]: 'short' }, { [security.CHALLENGE_HEADER]: `${nonce()}"x` }]) {
      const res = await request(`${manager.url}/status`, { headers });
      assert.equal(res.status, 401);
      assert.equal(security.parseAuthParams(res.headers['www-authenticate']).params.nonce, undefined);
    }
  });

  test('a signed request is served once and its answer carries a MAC', async (t) => {
    const manager = await startManager(t);
    const res = await managerRequest(manager.url, manager.secret, '/status');
    assert.equal(res.status, 200);
    assert.ok(res.signed);
    assert.equal(res.json.auth, security.AUTH_NAME);
    // The same Authorization again (a recording replayed): refused, stale.
    const replay = await request(`${manager.url}/status`, { headers: { authorization: res.authorization } });
    assert.equal(replay.status, 401);
    assert.equal(replay.headers['authentication-info'], undefined);
  });

  test('the next nonce of an answer signs one more request, once', async (t) => {
    const manager = await startManager(t);
    const first = await managerRequest(manager.url, manager.secret, '/status');
    assert.match(first.nextNonce, /^[0-9a-f]{64}$/);
    const second = await managerRequest(manager.url, manager.secret, '/status', { nonce: first.nextNonce });
    assert.equal(second.status, 200);
    assert.ok(second.signed);
    assert.notEqual(second.nextNonce, first.nextNonce);
    const again = await request(`${manager.url}/status`, { headers: { authorization: second.authorization } });
    assert.equal(again.status, 401);
    // A changed next nonce breaks the answer's MAC.
    const info = second.headers['authentication-info'].replace(second.nextNonce, 'ab'.repeat(32));
    const mac = security.parseAuthParams(`x ${info}`).params.mac;
    assert.ok(!security.safeEqualHex(mac, security.responseMac(manager.secret, second.nonce, 200, Buffer.from(second.body), 'ab'.repeat(32))));
  });

  test('a recorded /host/start replayed: 401, nothing started', async (t) => {
    const manager = await startManager(t);
    const json = { config: HOST_CONFIG };
    const started = await managerRequest(manager.url, manager.secret, '/host/stop', { method: 'POST', json });
    assert.equal(started.status, 500); // nothing to stop, but a served request
    const replays = [
      // /host/stop's Authorization on /host/start, and on /host/stop with its own body.
      { target: '/host/start', body: JSON.stringify(json) },
      { target: '/host/stop', body: JSON.stringify(json) },
    ];
    for (const { target, body } of replays) {
      const res = await request(`${manager.url}${target}`, {
        method: 'POST',
        body,
        headers: { authorization: started.authorization, 'content-type': 'application/json', [security.CHALLENGE_HEADER]: nonce() },
      });
      assert.equal(res.status, 401, target);
      // The challenge answered anew says that the nonce is no longer valid.
      assert.equal(security.parseAuthParams(res.headers['www-authenticate']).params.stale, 'true');
    }
    assert.equal(await hostStarted(manager), false);
    assert.ok(!fs.existsSync(runtime.managedHostLogfile(manager.runtimeDir, HOST_CONFIG)));
  });

  test('a MAC over another method, path or body: 401, nothing started', async (t) => {
    const manager = await startManager(t);
    const body = JSON.stringify({ config: HOST_CONFIG });
    const forgeries = [
      ['POST', '/host/status', body], // signed for another path
      ['POST', '/host/start', JSON.stringify({ config: CONFIG })], // another body
      ['GET', '/host/start', body], // another method
      ['POST', '/host/start?x=1', body], // another target
    ];
    for (const [method, target, signedBody] of forgeries) {
      const { res, clientNonce } = await challenge(manager.url, '/host/start', 'POST');
      const serverNonce = checkChallenge(res, manager.secret, clientNonce);
      const authorization = signed(manager.secret, serverNonce, method, target, signedBody);
      const answer = await request(`${manager.url}/host/start`, {
        method: 'POST',
        body,
        headers: { authorization, 'content-type': 'application/json' },
      });
      assert.equal(answer.status, 401, `${method} ${target} ${signedBody}`);
      assert.ok(answer.body.includes(manager.secretFile));
    }
    // A MAC made with another secret, and a proof used as a MAC.
    const { res, clientNonce } = await challenge(manager.url, '/host/start', 'POST');
    const serverNonce = checkChallenge(res, manager.secret, clientNonce);
    const proof = security.parseAuthParams(res.headers['www-authenticate']).params.proof;
    for (const authorization of [
      signed('ef'.repeat(32), serverNonce, 'POST', '/host/start', body),
      `${security.AUTH_SCHEME} nonce="${serverNonce}", mac="${proof}"`,
    ]) {
      const answer = await request(`${manager.url}/host/start`, { method: 'POST', body, headers: { authorization } });
      assert.equal(answer.status, 401);
    }
    assert.equal(await hostStarted(manager), false);
  });

  test('an unknown, used or old nonce: 401', async (t) => {
    const manager = await startManager(t);
    const unknown = signed(manager.secret, nonce(), 'GET', '/status', '');
    assert.equal((await request(`${manager.url}/status`, { headers: { authorization: unknown } })).status, 401);
    // A nonce fails once tried, even with a wrong MAC: no second guess.
    const { res, clientNonce } = await challenge(manager.url);
    const serverNonce = checkChallenge(res, manager.secret, clientNonce);
    const wrong = signed(manager.secret, serverNonce, 'GET', '/other', '');
    assert.equal((await request(`${manager.url}/status`, { headers: { authorization: wrong } })).status, 401);
    const right = signed(manager.secret, serverNonce, 'GET', '/status', '');
    assert.equal((await request(`${manager.url}/status`, { headers: { authorization: right } })).status, 401);
  });

  test('nonces expire', () => {
    let now = 1000;
    const store = new security.NonceStore({ lifetimeMs: 100, now: () => now });
    const old = store.issue();
    const fresh = store.issue();
    now += 101;
    assert.equal(store.consume(old), false);
    assert.equal(store.consume(fresh), false);
    const young = store.issue();
    assert.equal(store.size, 1); // the expired ones were swept
    now += 99;
    assert.equal(store.consume(young), true);
    assert.equal(store.consume(young), false);
  });

  test('a flood of challenges keeps the nonce store bounded, and the manager serves on', async (t) => {
    const manager = await inProcessManager(t);
    const secret = manager.secret;
    const first = await challenge(manager.url);
    const early = checkChallenge(first.res, secret, first.clientNonce);
    const flood = 3 * manager.nonces.max;
    for (let i = 0; i < flood; i += 100) {
      await Promise.all(Array.from({ length: 100 }, () => challenge(manager.url)));
    }
    assert.equal(manager.nonces.size, manager.nonces.max);
    // The oldest were dropped to make room.
    const late = signed(secret, early, 'GET', '/status', '');
    assert.equal((await request(`${manager.url}/status`, { headers: { authorization: late } })).status, 401);
    const res = await managerRequest(manager.url, secret, '/status');
    assert.equal(res.status, 200);
    assert.ok(res.signed);
  });

  test('MAC inputs are framed: shifting bytes between fields or labels changes the MAC', () => {
    const key = 'ab'.repeat(32);
    assert.notEqual(security.managerProof(key, 'ab', 'c'), security.managerProof(key, 'a', 'bc'));
    assert.notEqual(
      security.requestMac(key, 'n', 'GET', '/status', Buffer.alloc(0)),
      security.requestMac(key, 'n', 'GET/', 'status', Buffer.alloc(0)),
    );
    assert.notEqual(
      security.responseMac(key, 'n', 200, Buffer.from('x'), ''),
      security.requestMac(key, 'n', '200', '', Buffer.from('x')),
    );
  });
});
