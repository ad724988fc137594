'use strict';

// Real processes for the node tests: `js-host <config> --json --port 0` in its
// own process group (so that stopping it also stops the hosts of a manager),
// a temporary runtime dir, a small HTTP client, and a client of the manager's
// challenge-response (what js_host/manager_auth.py does).

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const security = require('../lib/security');

const BIN = path.join(__dirname, '..', 'bin', 'js-host.js');
const FIXTURES = path.join(__dirname, 'fixtures');

/** A fresh runtime dir (mode 0700), removed after the test. */
function tempRuntimeDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'js-host-test-'));
  fs.chmodSync(dir, 0o700);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A config file `name` in a new private temp dir: {dir, config}. `source` is its
 * text, or a function of the dir giving it (for configs that name files there).
 */
function writeConfig(t, name, source) {
  const dir = tempRuntimeDir(t);
  const config = path.join(dir, name);
  fs.writeFileSync(config, typeof source === 'function' ? source(dir) : source);
  return { dir, config };
}

function envFor(runtimeDir) {
  return { ...process.env, JS_HOST_RUNTIME_DIR: runtimeDir };
}

/** Run the CLI to completion: {status, stdout, stderr}. */
function runCli(args, { runtimeDir, cwd } = {}) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: runtimeDir ? envFor(runtimeDir) : process.env,
    cwd,
    // A hang guard, not a measure: generous, as a loaded machine can stall a start for seconds.
    timeout: 60000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Start `js-host <config> --json --port 0 ...args`; resolves once it printed
 * its status line. Stopped (process group SIGKILL) after the test.
 */
function startServer(t, config, args = [], { runtimeDir } = {}) {
  const child = spawn(process.execPath, [BIN, config, '--json', '--port', '0', ...args], {
    env: runtimeDir ? envFor(runtimeDir) : process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const server = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    kill(signal = 'SIGTERM') {
      child.kill(signal);
    },
  };
  t.after(() => killGroup(child));
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    server.stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    let ready = false;
    child.stdout.on('data', (chunk) => {
      server.stdout += chunk;
      if (ready) return;
      const newline = server.stdout.indexOf('\n');
      if (newline === -1) return;
      ready = true;
      try {
        server.status = JSON.parse(server.stdout.slice(0, newline));
      } catch (err) {
        reject(new Error(`unexpected first line: ${server.stdout}`));
        return;
      }
      server.port = server.status.config.port;
      server.url = `http://127.0.0.1:${server.port}`;
      resolve(server);
    });
    server.exited.then(({ code, signal }) => {
      if (!ready) reject(new Error(`exited (${code || signal}) before listening: ${server.stderr}`));
    });
  });
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** One HTTP request on a fresh connection: {status, headers, body}. */
function request(url, { method = 'GET', body, headers = {}, json } = {}) {
  const payload = json !== undefined ? JSON.stringify(json) : body;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    if (json !== undefined && !headers['content-type']) req.setHeader('content-type', 'application/json');
    req.end(payload);
  });
}

/**
 * The challenge of a 401 from the manager, its proof checked against `secret`
 * for `clientNonce`: the server nonce, or an Error saying what is wrong.
 */
function checkChallenge(res, secret, clientNonce) {
  const auth = security.parseAuthParams(res.headers['www-authenticate']);
  if (res.status !== 401 || auth === null || auth.scheme !== security.AUTH_SCHEME) {
    return new Error(`no challenge: ${res.status} ${res.headers['www-authenticate']}`);
  }
  const { nonce, proof } = auth.params;
  if (!nonce || !security.safeEqualHex(proof, security.managerProof(secret, clientNonce, nonce))) {
    return new Error(`wrong proof in ${res.headers['www-authenticate']}`);
  }
  return nonce;
}

/**
 * One request to the manager at `url` with the whole exchange: challenge,
 * proof checked (unless `nonce`, a nextNonce of an earlier answer, is given),
 * signed request, MAC of the answer checked. Resolves to
 * {status, headers, body, json, signed, nextNonce, nonce, authorization}.
 */
async function managerRequest(url, secret, target, { method = 'GET', json, body, headers = {}, nonce: given } = {}) {
  let nonce = given;
  if (nonce === undefined) {
    const clientNonce = crypto.randomBytes(32).toString('hex');
    const challenge = await request(`${url}${target}`, { method, headers: { ...headers, [security.CHALLENGE_HEADER]: clientNonce } });
    nonce = checkChallenge(challenge, secret, clientNonce);
    if (nonce instanceof Error) throw nonce;
  }
  const payload = json !== undefined ? JSON.stringify(json) : body || '';
  const authorization = `${security.AUTH_SCHEME} nonce="${nonce}", mac="${security.requestMac(secret, nonce, method, target, Buffer.from(payload))}"`;
  const extra = json !== undefined ? { 'content-type': 'application/json' } : {};
  const res = await request(`${url}${target}`, { method, body: payload, headers: { ...extra, ...headers, authorization } });
  const info = security.parseAuthParams(`x ${res.headers['authentication-info'] || ''}`);
  const next = info === null ? undefined : info.params.nextnonce;
  const expected = security.responseMac(secret, nonce, res.status, Buffer.from(res.body), next || '');
  res.signed = info !== null && security.safeEqualHex(info.params.mac, expected);
  res.nextNonce = res.signed ? next : undefined;
  const type = res.headers['content-type'] || '';
  res.json = type.startsWith('application/json') ? JSON.parse(res.body) : undefined;
  res.nonce = nonce;
  res.authorization = authorization;
  return res;
}

function call(server, name, data = {}, headers = {}) {
  return request(`${server.url}/function/${name}`, { method: 'POST', json: data, headers });
}

/** Resolve when the port no longer accepts connections. */
async function waitClosed(port, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const open = await new Promise((resolve) => {
      const socket = require('node:net').connect(port, '127.0.0.1');
      socket.on('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (!open) return;
    await sleep(50);
  }
  throw new Error(`port ${port} still open after ${timeout}ms`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `predicate()` is true (polling). */
async function waitFor(predicate, timeout = 5000, what = 'condition') {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

module.exports = {
  BIN,
  FIXTURES,
  tempRuntimeDir,
  writeConfig,
  envFor,
  runCli,
  startServer,
  request,
  checkChallenge,
  managerRequest,
  call,
  waitClosed,
  waitFor,
  sleep,
  isAlive,
};
