'use strict';

// The entry of a pool worker, forked by worker_process.js with
// `<config file> <port> <measure memory: 1|0> <log fields: 1|0> <source maps by default: 1|0>`: it loads the config as the single-process host does
// (a Host that never listens: extendHost, addFunction, host.logger and
// host.config work the same), reports ready, then runs one call at a time
// with call.js's rules. The messages (JSON arrays over the IPC channel) are
// described in worker_process.js. Logging goes to the master, which writes it
// to the host's logger and logfile.
//
// The worker ends when its master does: on 'disconnect' (also after a SIGKILL
// of the master, the channel closes), and, since a function stuck in a loop
// never sees that event, through a watchdog thread that kills the process
// once its parent is gone.

const { Worker } = require('node:worker_threads');
const { BadBody, parseObject } = require('./body_reader');
const { FunctionCall } = require('./call');
const { ConfigError, loadConfigFile, sourceMapsOn, watchNodeModules } = require('./config');
const { Host } = require('./host');
const { loadedFiles } = require('./code_version');
const { Logger } = require('./logger');
const { unknownFunction } = require('./server');

const WATCHDOG_INTERVAL_MS = 1000;
// How often the worker tells its master its heap used (GET /metrics).
const HEAP_REPORT_INTERVAL_MS = 5000;
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid !== workerData) process.kill(process.pid, 'SIGKILL');
}, ${WATCHDOG_INTERVAL_MS});
`;
// Exit code of a worker that reported a crash (the cause went in the message).
const CRASH_EXIT_CODE = 70;

/** A call run in a worker: answered over IPC; no req/res; the master keeps the deadline. */
class WorkerCall extends FunctionCall {
  constructor(host, entry, id, requestId) {
    super(host, entry, null, null);
    this.id = id;
    this.requestId = requestId;
  }

  context() {
    return { name: this.entry.name, host: this.host };
  }

  answer(status, body) {
    // Reading the RSS costs system calls: only when maxWorkerMemory asks for it.
    process.send([this.id, status, body, measureMemory ? process.memoryUsage.rss() : 0]);
  }

  // The master kills this process at functionTimeout: whatever the function does.
  startTimer() {}
}

// Log lines travel to the master as ['log', level, message, fields?]: the master writes
// them in its format, adding this worker's pid. The fields of a call's lines (and the
// request id of each call) are sent only when the master writes JSON lines: text lines
// cost the channel nothing more.
const ipcLogger = {
  info: (message, fields) => sendLog('info', message, fields),
  warn: (message, fields) => sendLog('warn', message, fields),
  error: (message, fields) => sendLog('error', message, fields),
};

function sendLog(level, message, fields) {
  send(fields === undefined ? ['log', level, String(message)] : ['log', level, String(message), fields]);
}

function send(message, callback) {
  if (process.connected) process.send(message, callback);
  else if (callback) callback();
}

let host = null;
let measureMemory = false;

async function main() {
  const [configFile, port, memory, fields, sourceMapsByDefault] = process.argv.slice(2);
  measureMemory = memory === '1';
  process.on('disconnect', () => process.exit(0));
  process.on('uncaughtException', onCrash);
  new Worker(WATCHDOG, { eval: true, workerData: process.ppid }).unref();

  let nodeModules;
  try {
    // As the single-process host: maps read while the config loads, then used as it says.
    const startedWithMaps = process.sourceMapsEnabled === true;
    process.setSourceMapsEnabled(true);
    const { config } = await loadConfigFile(configFile, { host: true });
    process.setSourceMapsEnabled(sourceMapsOn(config, sourceMapsByDefault === '1' || startedWithMaps));
    nodeModules = watchNodeModules(config);
    host = new Host(config, { logger: new Logger({ custom: ipcLogger, customFields: fields === '1' }), port: Number(port) });
    host.statusJson();
  } catch (err) {
    send(['failed', describeStartError(err, configFile)], () => process.exit(1));
    return;
  }
  process.on('message', onMessage);
  const cacheControl = {};
  for (const entry of host.functions.values()) {
    if (entry.cacheControl !== undefined) cacheControl[entry.name] = entry.cacheControl;
  }
  send([
    'ready',
    {
      functions: Array.from(host.functions.keys()),
      cacheControl,
      codeVersion: host.codeVersion,
      config: host.serializableConfig(),
      // The user's modules this worker loaded (what a development client watches).
      loadedFiles: loadedFiles(undefined, { nodeModules }),
      heapUsed: process.memoryUsage().heapUsed,
    },
  ]);
  setInterval(() => send(['heap', process.memoryUsage().heapUsed]), HEAP_REPORT_INTERVAL_MS).unref();
}

// A call from the master: [id, function name, body text, request id (JSON log lines only)].
function onMessage(message) {
  const [id, name, body, requestId] = message;
  const entry = host.functions.get(name);
  if (entry === undefined) {
    process.send([id, 404, unknownFunction(name), 0]);
    return;
  }
  const data = parseObject(body);
  if (data instanceof BadBody) {
    process.send([id, 400, data.message, 0]);
    return;
  }
  new WorkerCall(host, entry, id, requestId).run(data);
}

// An uncaught exception or an unhandled rejection (Node raises those as
// uncaught exceptions, with `origin` saying so): the master fails the call in
// flight with the cause and replaces this worker.
function onCrash(err, origin) {
  const cause = origin === 'unhandledRejection' ? 'unhandledRejection' : 'uncaughtException';
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : String(err);
  send(['crash', cause, stack], () => process.exit(CRASH_EXIT_CODE));
}

// The CLI's one-line messages for a config that does not load.
function describeStartError(err, configFile) {
  const message = String(err && err.message).split('\n')[0];
  if (err instanceof ConfigError) return message.includes(configFile) ? message : `${message} (config file ${configFile})`;
  return `Error loading config file ${configFile}: ${message}`;
}

// Run only as a forked worker's entry: requiring this module does nothing.
if (require.main === module) main().catch(onCrash);

module.exports = { CRASH_EXIT_CODE };
