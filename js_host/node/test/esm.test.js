'use strict';

// ES-module configs (.mjs, .js under "type": "module", .cjs beside them),
// asynchronous set-up, their one-line errors, ES-module-only packages from
// both kinds of config, ES modules in loadedFiles and codeVersion, and
// source-mapped stacks (a committed esbuild bundle and its map), in the
// single-process host, a pool's worker and a manager's host.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const { describe, test } = require('node:test');
const { BIN, runCli, startServer, request, call, tempRuntimeDir, managerRequest } = require('./helpers');

const SOURCEMAP = path.join(__dirname, '..', '..', '..', 'tests', 'fixtures', 'sourcemap');
const BUNDLE = path.join(SOURCEMAP, 'bundle', 'bundle.js');
// Where the bundle's error is thrown: in the bundle, and in its source.
const BUNDLED_FRAME = /bundle[/\\]bundle\.js:11:\d+/;
const ORIGINAL_FRAME = /src[/\\]render\.js:5:\d+/;

// A package that can only be imported (no "require" condition), as nanoid 5 or escape-goat 4.
const ESM_ONLY_PACKAGE = {
  'node_modules/esm-only/package.json': JSON.stringify({
    name: 'esm-only',
    version: '1.0.0',
    type: 'module',
    exports: { '.': { import: './index.js' } },
  }),
  'node_modules/esm-only/index.js': "export function shout(text) {\n  return `${text.toUpperCase()}!`;\n}\n",
};

/** A temp folder with `files` ({relative path: text}): its path. */
function project(t, files) {
  const dir = tempRuntimeDir(t);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** `js-host <config> --json --port 0 ...args` as a manager starts it (JS_HOST_MANAGED): its status line. */
function startManaged(t, config, args = []) {
  const child = spawn(process.execPath, [BIN, config, '--json', '--port', '0', ...args], {
    env: { ...process.env, JS_HOST_MANAGED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (!stdout.includes('\n')) return;
      const status = JSON.parse(stdout.split('\n')[0]);
      resolve({ status, url: `http://127.0.0.1:${status.config.port}` });
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before listening: ${stderr}`)));
  });
}

const FUNCTIONS = "{ hello: (data, cb) => cb(null, 'Hello, ' + data.name + '!') }";

describe('config kinds: the same host from each', () => {
  const kinds = {
    '.mjs': { 'host.config.mjs': `export default { functions: ${FUNCTIONS}, extra: 1 };` },
    '.js under "type": "module"': {
      'package.json': '{"type": "module"}',
      'host.config.js': `export default { functions: ${FUNCTIONS}, extra: 1 };`,
    },
    '.cjs under "type": "module"': {
      'package.json': '{"type": "module"}',
      'host.config.cjs': `module.exports = { functions: ${FUNCTIONS}, extra: 1 };`,
    },
    'an async function as default export': {
      'host.config.mjs': `export default async () => {\n  await new Promise((resolve) => setTimeout(resolve, 20));\n  return { functions: ${FUNCTIONS}, extra: 1 };\n};`,
    },
    'a promise as default export (top-level await too)': {
      'host.config.mjs':
        `const settings = await Promise.resolve({ extra: 1 });\n` +
        `export default new Promise((resolve) => setTimeout(() => resolve({ functions: ${FUNCTIONS}, ...settings }), 20));`,
    },
    'an async CommonJS config': { 'host.config.js': `module.exports = async () => ({ functions: ${FUNCTIONS}, extra: 1 });` },
  };
  for (const [kind, files] of Object.entries(kinds)) {
    test(kind, async (t) => {
      const dir = project(t, files);
      const config = path.join(dir, Object.keys(files).find((name) => name.startsWith('host.config')));
      const shown = runCli([config, '--config']);
      assert.equal(shown.status, 0, shown.stderr);
      const expected = { functions: ['hello'], extra: 1, address: '127.0.0.1', port: '9009', requestDataLimit: '10mb' };
      assert.deepEqual(JSON.parse(shown.stdout).config, expected);
      const host = await startServer(t, config);
      assert.deepEqual(host.status.config, { ...expected, port: host.port });
      const res = await call(host, 'hello', { name: 'ESM' });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'Hello, ESM!');
      // The bare /status is the start-up status line (the 2015 clients compare them).
      assert.deepEqual(JSON.parse((await request(`${host.url}/status`)).body), host.status);
    });
  }

  test('a pool of workers loads an ES-module config too', async (t) => {
    const dir = project(t, { 'host.config.mjs': `export default async () => ({ workers: 2, functions: ${FUNCTIONS} });` });
    const host = await startServer(t, path.join(dir, 'host.config.mjs'));
    assert.deepEqual(host.status.config.functions, ['hello']);
    assert.equal((await call(host, 'hello', { name: 'pool' })).body, 'Hello, pool!');
  });
});

describe('bad ES-module configs: exit 1, one line naming the file', () => {
  const cases = {
    'missing file': [{}, 'missing.config.mjs', /^js-host: Config file not found: .*missing\.config\.mjs$/],
    'syntax error, with its line': [
      { 'host.config.mjs': 'export default {\n  functions: {\n    a: (d, cb) => cb(null, 1\n  },\n};\n' },
      'host.config.mjs',
      /^js-host: Syntax error in config file .*host\.config\.mjs line 3: missing \) after argument list$/,
    ],
    'syntax error in a module it imports': [
      { 'host.config.mjs': "import './part.mjs';\nexport default { functions: {} };\n", 'part.mjs': 'export const x = ;\n' },
      'host.config.mjs',
      /^js-host: Syntax error in config file .*part\.mjs line 1: Unexpected token ';'$/,
    ],
    'not an object': [{ 'host.config.mjs': 'export default 42;' }, 'host.config.mjs', /does not export default an object \(it gives a number\): .*host\.config\.mjs$/],
    'no default export': [
      { 'host.config.mjs': 'export const functions = {};' },
      'host.config.mjs',
      /does not `export default` its config \(it exports only functions\); write export default \{functions: \{\.\.\.\}\}: .*host\.config\.mjs$/,
    ],
    'no functions': [{ 'host.config.mjs': 'export default { port: 9000 };' }, 'host.config.mjs', /Config file has no functions: .*host\.config\.mjs$/],
    'functions not an object': [
      { 'host.config.mjs': 'export default { functions: [() => 1] };' },
      'host.config.mjs',
      /functions must be an object of \{name: function\}, not an array: .*host\.config\.mjs$/,
    ],
    'CommonJS under "type": "module": Node\'s hint kept': [
      { 'package.json': '{"type": "module"}', 'host.config.js': 'module.exports = { functions: {} };' },
      'host.config.js',
      /host\.config\.js line 1: ReferenceError: module is not defined in ES module scope This file is being treated as an ES module .* rename it to use the '\.cjs' file extension\.$/,
    ],
    'a set-up that fails': [
      { 'host.config.mjs': "export default async () => {\n  throw new Error('database down');\n};" },
      'host.config.mjs',
      /^js-host: Error in the set-up of config file .*host\.config\.mjs line 2: database down$/,
    ],
  };
  for (const [name, [files, file, pattern]] of Object.entries(cases)) {
    test(name, (t) => {
      const config = path.join(project(t, files), file);
      const result = runCli([config, '--config']);
      assert.equal(result.status, 1);
      assert.equal(result.stdout, '');
      assert.match(result.stderr.trim(), pattern);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    });
  }

  test('a pool worker fails with the same line', (t) => {
    const config = path.join(project(t, { 'host.config.mjs': 'export default 42;' }), 'host.config.mjs');
    const result = runCli([config, '--json', '--port', '0', '--workers', '1']);
    assert.equal(result.status, 1);
    assert.match(result.stderr.trim().split('\n').pop(), /does not export default an object \(it gives a number\): .*host\.config\.mjs$/);
  });
});

describe('ES-module-only packages', () => {
  test('from an ES-module config (import) and a CommonJS one (await import())', async (t) => {
    const dir = project(t, {
      ...ESM_ONLY_PACKAGE,
      'esm.config.mjs': "import { shout } from 'esm-only';\nexport default { functions: { shout: (data, cb) => cb(null, shout(data.text)) } };\n",
      'cjs.config.js':
        'module.exports = async () => {\n' +
        "  const { shout } = await import('esm-only');\n" +
        '  return {\n' +
        '    functions: {\n' +
        '      shout: (data, cb) => cb(null, shout(data.text)),\n' +
        "      later: async (data) => (await import('esm-only')).shout(data.text + ' later'),\n" +
        '    },\n' +
        '  };\n' +
        '};\n',
    });
    // require() of it fails: it exports no "require" condition (and on Node 18, require() of any ES module fails).
    assert.throws(() => createRequire(path.join(dir, 'cjs.config.js'))('esm-only'), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
    const esm = await startServer(t, path.join(dir, 'esm.config.mjs'));
    assert.equal((await call(esm, 'shout', { text: 'esm' })).body, 'ESM!');
    const cjs = await startServer(t, path.join(dir, 'cjs.config.js'));
    assert.equal((await call(cjs, 'shout', { text: 'cjs' })).body, 'CJS!');
    assert.equal((await call(cjs, 'later', { text: 'cjs' })).body, 'CJS LATER!');
  });
});

describe('loaded files and code version cover ES modules', () => {
  const files = {
    ...ESM_ONLY_PACKAGE,
    'host.config.mjs':
      "import { label } from './component.mjs';\nimport { shout } from 'esm-only';\n" +
      'export default { workers: 0, functions: { label: (data, cb) => cb(null, shout(label)) } };\n',
    'component.mjs': "export const label = 'one';\n",
  };

  test('a managed host reports its ES modules, without node_modules unless watchNodeModules', async (t) => {
    const dir = project(t, {
      ...files,
      'all.config.mjs': "import config from './host.config.mjs';\nexport default { ...config, watchNodeModules: true };\n",
    });
    const { status } = await startManaged(t, path.join(dir, 'host.config.mjs'));
    const component = path.join(dir, 'component.mjs');
    assert.deepEqual(Object.keys(status.loadedFiles), [component, path.join(dir, 'host.config.mjs')]);
    assert.equal(status.loadedFiles[component], String(fs.statSync(component, { bigint: true }).mtimeNs));
    const all = await startManaged(t, path.join(dir, 'all.config.mjs'));
    assert.ok(path.join(dir, 'node_modules', 'esm-only', 'index.js') in all.status.loadedFiles, JSON.stringify(all.status.loadedFiles));
  });

  test("a pool worker's loadedFiles cover them too", async (t) => {
    const dir = project(t, files);
    const { status } = await startManaged(t, path.join(dir, 'host.config.mjs'), ['--workers', '1']);
    assert.ok(path.join(dir, 'component.mjs') in status.loadedFiles, JSON.stringify(status.loadedFiles));
    assert.equal(status.workers.size, 1);
  });

  test('an edited ES module changes the code version', (t) => {
    const dir = project(t, files);
    const config = path.join(dir, 'host.config.mjs');
    const version = () => JSON.parse(runCli([config, '--config']).stdout).codeVersion;
    const first = version();
    assert.equal(version(), first);
    fs.writeFileSync(path.join(dir, 'component.mjs'), "export const label = 'two';\n");
    assert.notEqual(version(), first);
    fs.writeFileSync(path.join(dir, 'node_modules', 'esm-only', 'index.js'), "export const shout = (text) => text;\n");
    assert.notEqual(version(), first);
  });
});

describe('source maps: stacks name the original file and line', () => {
  /** A config that uses the bundle, with `settings` added: its path. */
  function bundleConfig(t, settings) {
    return path.join(
      project(t, { 'host.config.js': `module.exports = { ...require(${JSON.stringify(BUNDLE)}), ...${JSON.stringify(settings)} };\n` }),
      'host.config.js',
    );
  }

  test('off by default, on with sourceMaps: true (in the answer and the logfile)', async (t) => {
    const plain = await startServer(t, bundleConfig(t, {}));
    const unmapped = await call(plain, 'render_card', {});
    assert.equal(unmapped.status, 500);
    assert.match(unmapped.body, BUNDLED_FRAME);

    const config = bundleConfig(t, { sourceMaps: true });
    const logfile = path.join(path.dirname(config), 'host.log');
    const host = await startServer(t, config, ['--logfile', logfile]);
    const res = await call(host, 'render_card', {});
    assert.equal(res.status, 500);
    assert.match(res.body, /^Error: renderCard needs a title\n/);
    assert.match(res.body, ORIGINAL_FRAME);
    assert.equal((await call(host, 'render_card', { title: 'T' })).body, '<div class="card">T</div>');
    assert.match(fs.readFileSync(logfile, 'utf8'), /produced an error Error: renderCard needs a title\n.*src[/\\]render\.js:5:/);
  });

  test('in a pool worker', async (t) => {
    const res = await call(await startServer(t, bundleConfig(t, { sourceMaps: true }), ['--workers', '1']), 'render_card', {});
    assert.match(res.body, ORIGINAL_FRAME);
  });

  test('on by default in a managed host, in one process or with its worker; sourceMaps: false turns it off', async (t) => {
    for (const workers of [0, 1]) {
      const { url } = await startManaged(t, bundleConfig(t, { workers }));
      const res = await request(`${url}/function/render_card`, { method: 'POST', json: {} });
      assert.match(res.body, ORIGINAL_FRAME, `workers: ${workers}`);
    }
    const { url } = await startManaged(t, bundleConfig(t, { sourceMaps: false }));
    assert.match((await request(`${url}/function/render_card`, { method: 'POST', json: {} })).body, BUNDLED_FRAME);
  });

  test('sourceMaps must be a boolean', (t) => {
    const result = runCli([bundleConfig(t, { sourceMaps: 'yes' }), '--config']);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /sourceMaps must be true or false, not "yes"/);
  });
});

describe('the manager with ES-module configs', () => {
  test('an .mjs manager config starts an .mjs host config', async (t) => {
    const runtimeDir = tempRuntimeDir(t);
    const dir = project(t, {
      'manager.config.mjs': 'export default { disconnectTimeout: 300 };',
      'host.config.mjs': `import bundle from ${JSON.stringify(BUNDLE)};\nexport default { functions: { ...bundle.functions, ...${FUNCTIONS} } };\n`,
    });
    const manager = await startServer(t, path.join(dir, 'manager.config.mjs'), ['--manager'], { runtimeDir });
    const secret = fs.readFileSync(path.join(runtimeDir, 'manager.secret'), 'utf8');
    const config = path.join(dir, 'host.config.mjs');
    const started = await managerRequest(manager.url, secret, '/host/start', { method: 'POST', json: { config } });
    assert.equal(started.status, 200, started.body);
    const status = JSON.parse(started.json.output);
    assert.deepEqual(status.config.functions, ['render_card', 'hello']);
    assert.ok(config in status.loadedFiles);
    const url = `http://127.0.0.1:${status.config.port}`;
    assert.equal((await request(`${url}/function/hello`, { method: 'POST', json: { name: 'M' } })).body, 'Hello, M!');
    // Its worker maps stacks by default.
    assert.match((await request(`${url}/function/render_card`, { method: 'POST', json: {} })).body, ORIGINAL_FRAME);
    await managerRequest(manager.url, secret, '/host/stop', { method: 'POST', json: { config } });
  });
});
