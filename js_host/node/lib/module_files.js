'use strict';

// Every file of user code this process loaded: CommonJS modules from
// require.cache, and ES modules, which Node keeps in no public registry,
// recorded by module hooks (module_files_hooks.mjs, registered with
// module.register() before an ES-module config or an asynchronous set-up
// loads: config.js) that post each loaded file: URL over a MessagePort. The
// hooks only run when a module is loaded, never in a call: a call costs the
// same with them. Node runs them on a thread of its own (about 25 ms at start
// and 10 MB of memory): a plain CommonJS config never starts it.
//
// As the hooks run on their own thread, the URLs arrive after the import()
// that loaded them may have settled, so settled() waits for a round trip
// through the same port (its messages keep their order) before the list is read.
//
// module.register came with Node 20.6: on Node 20.0 to 20.5 (allowed by `engines`,
// >= 20) ES modules are not recorded; recordModules() says so, and the list has the
// CommonJS ones only.

const nodeModule = require('node:module');
const { fileURLToPath, pathToFileURL } = require('node:url');
const { MessageChannel } = require('node:worker_threads');

// A hooks thread that does not answer a flush (it cannot happen, but a host
// must never wait forever for its list of files) is given up on after this.
const FLUSH_TIMEOUT_MS = 2000;

const esModules = new Set();
let port = null;
let nextFlush = 0;
const flushes = new Map();

/** Start recording the ES modules loaded from now on (once per process; false when Node cannot). */
function recordModules() {
  if (port !== null) return true;
  if (typeof nodeModule.register !== 'function') return false;
  const channel = new MessageChannel();
  port = channel.port1;
  port.on('message', (message) => {
    if (typeof message === 'string') {
      esModules.add(fileURLToPath(message));
    } else if (message && flushes.has(message.flushed)) {
      flushes.get(message.flushed)();
    }
  });
  // The port never keeps the process alive (on() refs it: unref after).
  port.unref();
  nodeModule.register(pathToFileURL(`${__dirname}/module_files_hooks.mjs`), {
    data: { port: channel.port2 },
    transferList: [channel.port2],
  });
  return true;
}

/** Resolves once every module loaded so far is recorded. */
function settled() {
  if (port === null) return Promise.resolve();
  return new Promise((resolve) => {
    const id = ++nextFlush;
    const done = () => {
      clearTimeout(timer);
      flushes.delete(id);
      resolve();
    };
    // Kept referenced: it also keeps the process up until the answer comes.
    const timer = setTimeout(done, FLUSH_TIMEOUT_MS);
    flushes.set(id, done);
    port.postMessage(id);
  });
}

/** The absolute paths of every module loaded (CommonJS and recorded ES modules), sorted. */
function moduleFiles() {
  const files = new Set(Object.keys(require.cache));
  for (const file of esModules) files.add(file);
  return [...files].sort();
}

/** The ES modules recorded, in the order they were loaded. */
function esModuleFiles() {
  return [...esModules];
}

module.exports = { recordModules, settled, moduleFiles, esModuleFiles };
