'use strict';

// Reading a host.config.js (or .mjs, .cjs) and turning it into the config a server runs with
// and reports in /status, exactly as js-host 0.11 does: the user's properties
// first, in their order, then the defaults they did not set; some properties
// never appear in /status; `functions` appears as a list of names.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { fileURLToPath, pathToFileURL } = require('node:url');
const { types } = require('node:util');
const vm = require('node:vm');
const { esModuleFiles, recordModules, settled } = require('./module_files');

class ConfigError extends Error {}

// Not part of /status (js-host 0.11 omits the same ones; extendHost is ours).
const UNSERIALIZED = new Set([
  'logger',
  'silent',
  'outputOnListen',
  'disconnectTimeout',
  'stopManagerIfNoConnections',
  'extendHost',
]);

/**
 * Load a config file: CommonJS (`module.exports = {...}`: require(), as
 * js-host 0.11) or an ES module (`.mjs`, `.js` under "type": "module", or a
 * `.js` in a package without "type" that uses ES-module syntax, as Node
 * decides: `export default {...}`, import()ed). The export may also be a
 * promise of the config, or a function (async or not) returning it: awaited
 * here, before the host listens. Resolves to {configFile, config, format};
 * any failure becomes a one-line ConfigError naming the file (and the line,
 * for a syntax error; Node's hint, such as "rename it to use the '.cjs' file
 * extension", kept).
 *
 * `host`: the config of a host, not of a manager: the ES modules it loads are
 * recorded (module_files.js; for an ES module or an asynchronous set-up, the
 * only ways a config loads them with its code) and, since nothing older has to be accepted, an
 * ES-module or asynchronous config must have functions (a CommonJS object
 * without them is accepted, with `functions: null`, as js-host 0.11 does).
 * `recordFiles` (default: `host`): false for a host that never shows its own code
 * version (a pool's master): no ES module is recorded, and no hooks thread starts.
 */
async function loadConfigFile(file, { host = false, recordFiles = host } = {}) {
  const configFile = path.resolve(file);
  if (!fs.existsSync(configFile)) {
    throw new ConfigError(`Config file not found: ${configFile}`);
  }
  const format = moduleFormat(configFile);
  // Only a config that can import ES modules (an ES module, or an async set-up)
  // records them: a plain CommonJS config costs what it did (no hooks thread).
  if (recordFiles && format === 'module') recordModules();
  let exported;
  try {
    exported = format === 'module' ? await import(pathToFileURL(configFile).href) : require(configFile);
  } catch (err) {
    throw new ConfigError(await describeLoadError(configFile, err, format));
  }
  // Before the set-up runs (a promise's pending import() still goes through the hooks).
  if (recordFiles && (typeof exported === 'function' || isPromise(exported))) recordModules();
  let config = exported;
  const esModule = format === 'module' || types.isModuleNamespaceObject(exported);
  if (esModule) {
    if (!Object.prototype.hasOwnProperty.call(exported, 'default')) {
      const names = Object.keys(exported).filter((name) => name !== '__esModule');
      throw new ConfigError(
        `Config file does not \`export default\` its config (${names.length ? `it exports only ${names.join(', ')}` : 'it exports nothing'}); ` +
          `write export default {functions: {...}}: ${configFile}`,
      );
    }
    config = exported.default;
  }
  let asynchronous = false;
  if (typeof config === 'function' || isPromise(config)) {
    asynchronous = true;
    try {
      config = await (typeof config === 'function' ? config() : config);
    } catch (err) {
      throw new ConfigError(await describeLoadError(configFile, err, format, 'in the set-up of config file'));
    }
  }
  const what = asynchronous ? 'set up a config object' : esModule ? 'export default an object' : 'export an object';
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    // A CommonJS object's message is js-host 0.11's.
    const gives = esModule || asynchronous ? ` (it gives ${describeValue(config)})` : '';
    throw new ConfigError(`Config file does not ${what}${gives}: ${configFile}`);
  }
  if (Object.keys(config).length === 0) {
    const hint = esModule || asynchronous ? '' : '; missing module.exports?';
    throw new ConfigError(`Config file does not ${what} (it ${esModule || asynchronous ? 'gives' : 'exports'} {}${hint}): ${configFile}`);
  }
  const { functions } = config;
  if (functions !== undefined && functions !== null && (typeof functions !== 'object' || Array.isArray(functions))) {
    throw new ConfigError(`functions must be an object of {name: function}, not ${describeValue(functions)}: ${configFile}`);
  }
  // A host with nothing to call is a mistake (a config that forgot its functions, or exported
  // them under another name), not an empty host whose every call fails with a 404.
  if (host && (functions === undefined || functions === null) && typeof config.extendHost !== 'function') {
    throw new ConfigError(`Config file has no functions: add functions: {<name>: <function>} to its config: ${configFile}`);
  }
  if (host) await settled();
  return { configFile, config, format: esModule ? 'module' : 'commonjs' };
}

/**
 * 'module' or 'commonjs': how Node runs `file`. `.mjs`/`.cjs` by their
 * extension; a `.js` by the "type" of the nearest package.json, or, when it
 * has none, by its syntax (import/export: an ES module), as Node 20.19+ and 22
 * detect it. Anything else is required (CommonJS, JSON).
 */
function moduleFormat(file) {
  const ext = path.extname(file);
  if (ext === '.mjs') return 'module';
  if (ext !== '.js') return 'commonjs';
  const type = packageType(path.dirname(file));
  if (type === 'module') return 'module';
  if (type === 'commonjs') return 'commonjs';
  return hasModuleSyntax(file) ? 'module' : 'commonjs';
}

/** The "type" of the package.json nearest to `dir` (undefined when none says). */
function packageType(dir) {
  for (let current = dir; ; current = path.dirname(current)) {
    const file = path.join(current, 'package.json');
    if (fs.existsSync(file)) {
      try {
        const type = JSON.parse(fs.readFileSync(file, 'utf8')).type;
        return type === 'module' || type === 'commonjs' ? type : undefined;
      } catch {
        return undefined; // require() says what is wrong with it, if it matters
      }
    }
    if (path.dirname(current) === current) return undefined;
  }
}

// What V8 says of ES-module syntax in a CommonJS script (Node's own detection uses the same).
const MODULE_SYNTAX = /Cannot use import statement outside a module|Unexpected token 'export'|Cannot use 'import\.meta' outside a module/;

/** Whether `file` only parses as an ES module (parsed, never run). */
function hasModuleSyntax(file) {
  let source;
  try {
    source = fs.readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  if (!/\b(import|export)\b/.test(source)) return false;
  try {
    vm.compileFunction(source, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: file });
    return false;
  } catch (err) {
    return err instanceof SyntaxError && MODULE_SYNTAX.test(err.message);
  }
}

function isPromise(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function';
}

function describeValue(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

function firstLine(text) {
  return String(text).split('\n', 1)[0];
}

// Node's errors (codes ERR_*, "... in ES module scope") explain themselves on
// their next lines (e.g. "rename it to use the '.cjs' file extension"): kept, on one line.
function messageOf(err) {
  const text = String(err.message);
  if (!(typeof err.code === 'string' && err.code.startsWith('ERR_')) && !/ in ES module scope$/m.test(text)) return firstLine(text);
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .join(' ');
}

async function describeLoadError(configFile, err, format, what = 'loading config file') {
  if (!(err instanceof Error)) return `Error ${what} ${configFile}: ${String(err)}`;
  const message = messageOf(err);
  const stack = String(err.stack || '');
  if (err instanceof SyntaxError) {
    // V8 puts "<file>:<line>" on the first line of a SyntaxError from require();
    // an ES module's has none: `node --check` finds the file and the line.
    const where = /^(.*):(\d+)$/.exec(firstLine(stack)) || (await findSyntaxError(configFile, format));
    if (where) return `Syntax error in config file ${where[1]} line ${where[2]}: ${message}`;
    return `Syntax error in config file ${configFile}: ${message}`;
  }
  // Point at the config file's own line when the error started there (an ES module's frames are file: URLs).
  const frame = stack.split('\n').find((line) => line.includes(`${configFile}:`));
  const location = frame ? /:(\d+):\d+\)?$/.exec(frame.trim()) : null;
  const at = location ? ` line ${location[1]}` : '';
  const name = err.name && err.name !== 'Error' ? `${err.name}: ` : '';
  return `Error ${what} ${configFile}${at}: ${name}${message}`;
}

// Checked with `node --check` when an ES module fails to parse: at most this many files.
const SYNTAX_CHECKS = 10;

/**
 * [, file, line] of the syntax error an import() of `configFile` met: the
 * config file itself, or one of the ES modules loaded with it (the last
 * loaded first: Node parses each as it is loaded), or null. Only on an error.
 */
async function findSyntaxError(configFile, format) {
  if (format !== 'module') return null;
  await settled();
  const candidates = [configFile, ...esModuleFiles().reverse().filter((file) => file !== configFile)];
  for (const file of candidates.slice(0, SYNTAX_CHECKS)) {
    const result = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10000 });
    if (result.status === 0 || typeof result.stderr !== 'string') continue;
    const where = /^(.*):(\d+)$/m.exec(result.stderr);
    if (where) return [where[0], where[1].startsWith('file:') ? fileURLToPath(where[1]) : where[1], where[2]];
  }
  return null;
}

/**
 * Whether a host maps its stacks through source maps (Node's own support:
 * the stack of a function's error names the original file and line of
 * bundled code): the config's `sourceMaps: true|false`, else `byDefault` (on
 * for a host started by the manager, for development, or by `node --enable-source-maps`).
 */
function sourceMapsOn(config, byDefault) {
  const { sourceMaps } = config;
  if (sourceMaps === undefined) return byDefault;
  if (typeof sourceMaps !== 'boolean') throw new ConfigError(`sourceMaps must be true or false, not ${JSON.stringify(sourceMaps)}`);
  return sourceMaps;
}

/** The config's `watchNodeModules` (whether loadedFiles includes installed packages). */
function watchNodeModules(config) {
  const { watchNodeModules: value = false } = config;
  if (typeof value !== 'boolean') throw new ConfigError(`watchNodeModules must be true or false, not ${JSON.stringify(value)}`);
  return value;
}

/** A copy of `config` with the missing `defaults` appended (key order kept). */
function withDefaults(config, defaults) {
  const merged = Object.assign({}, config);
  for (const key of Object.keys(defaults)) {
    if (merged[key] === undefined) merged[key] = defaults[key];
  }
  return merged;
}

/** The config as /status shows it. */
function serializableConfig(config, functionNames) {
  const result = {};
  for (const key of Object.keys(config)) {
    if (UNSERIALIZED.has(key)) continue;
    if (key === 'functions' && config.functions) {
      result.functions = functionNames || Object.keys(config.functions);
    } else {
      result[key] = config[key];
    }
  }
  return result;
}

module.exports = { ConfigError, loadConfigFile, moduleFormat, sourceMapsOn, watchNodeModules, withDefaults, serializableConfig };
