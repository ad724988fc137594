'use strict';

// The js-host command (bin/js-host.js): its arguments (args.js), the config
// loaded (config.js) and the server it asks for built: a host, a pool's master
// (`workers`, --workers, or 1 for a host started by the manager) or a manager.
// Then --config prints the status line and exits, --detached starts a copy
// (detached.js), and otherwise the server runs as this process's (serve.js).
// Every error is one line on stderr (`js-host: ...`), also appended to the
// logfile once it is known, and exit status 1.

const fs = require('node:fs');
const path = require('node:path');

const { parseArgs, UsageError, USAGE } = require('./args');
const { loadedFiles } = require('./code_version');
const { ConfigError, loadConfigFile, sourceMapsOn, watchNodeModules } = require('./config');
const { runDetached } = require('./detached');
const { Host } = require('./host');
const { Manager } = require('./manager');
const { PoolHost } = require('./pool_host');
const { poolSettings, workerCount } = require('./pool_settings');
const runtime = require('./runtime');
const { exitWith, serve } = require('./serve');
const { createLogger } = require('./server_config');
const version = require('./version');

// Where fail() copies its line, once the arguments say (--logfile), and in which format
// (--log-format, or the config's logFormat, once known).
let logfile = null;
let jsonLogs = false;

/** The one-line error of the command, on stderr and in the logfile; exit 1. */
function fail(message) {
  process.stderr.write(`js-host: ${message}\n`);
  if (logfile !== null) {
    try {
      // Opened as the logger opens it: never through a link, only a file of ours.
      const fd = runtime.openLogfile(logfile);
      try {
        const time = new Date().toISOString();
        const line = jsonLogs ? JSON.stringify({ time, level: 'error', message }) : `${time} - error: ${message}`;
        fs.writeSync(fd, `${line}\n`);
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      // The logfile is only a copy of stderr here (and stderr says why it was refused).
    }
  }
  process.exit(1);
}

/** Run the command with `argv` (the process's arguments after the script's name). */
function run(argv) {
  // Set by the parent process; removed so that user code does not inherit them.
  const env = { managed: process.env.JS_HOST_MANAGED === '1', detachedCopy: process.env.JS_HOST_DETACHED_COPY === '1' };
  delete process.env.JS_HOST_MANAGED;
  delete process.env.JS_HOST_DETACHED_COPY;
  main(argv, env).catch((err) => fail(`unexpected error: ${err && err.stack ? err.stack : err}`));
}

async function main(argv, env) {
  let args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${USAGE}\n${err.message}\n`);
    process.exit(1);
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (args.version) {
    process.stdout.write(`${version}\n`);
    return;
  }
  if (args.logfile !== undefined) logfile = path.resolve(args.logfile);

  const kind = args.manager ? 'manager' : 'host';
  let server;
  let configFile;
  try {
    // Node reads a module's source map as it loads it: on while the config
    // loads, then as the config says (sourceMapsOn; node --enable-source-maps also turns it on).
    const startedWithMaps = process.sourceMapsEnabled === true;
    if (!args.manager && !args.config) process.setSourceMapsEnabled(true);
    // A pool's master runs no function and shows its workers' code version: when --workers
    // says it is one before its config loads, it records no loaded file (no hooks thread).
    const poolMaster = !args.config && !args.detached && args.workers !== undefined && args.workers !== 0;
    const loaded = await loadConfigFile(args.file, { host: !args.manager, recordFiles: !args.manager && !poolMaster });
    configFile = loaded.configFile;
    const userConfig = loaded.config;
    const sourceMaps = !args.manager && sourceMapsOn(userConfig, env.managed || startedWithMaps);
    if (!args.manager) process.setSourceMapsEnabled(sourceMaps);
    const nodeModules = !args.manager && watchNodeModules(userConfig);
    const serving = !args.config && !args.detached;
    const logger = createLogger(userConfig, { holdConsole: args.json, format: args.logFormat });
    jsonLogs = logger.json;
    if (logfile !== null && serving) logger.addFile(logfile, openLogfileOrFail(logfile));
    // A manager's hosts run their functions in one worker unless the config says otherwise.
    const workers = args.manager ? 0 : workerCount(userConfig, args.workers, env.managed ? 1 : 0);
    if (args.manager) {
      const options = { logger, port: args.port };
      if (serving) {
        options.runtimeDir = runtime.ensureRuntimeDir();
        options.secret = runtime.getOrCreateSecret(options.runtimeDir);
        options.onExit = (reason) => exitWith(server, 0, reason);
      }
      server = new Manager(userConfig, options);
    } else if (workers > 0 && serving) {
      server = new PoolHost(userConfig, {
        logger,
        port: args.port,
        configFile,
        workers,
        logfile,
        sourceMaps,
        onFatal: (err) => {
          logger.error(`Host: exiting: no worker can start: ${err.message}`);
          exitWith(server, 1, 'no worker can start');
        },
      });
    } else {
      // --config and --detached show what a single-process host shows (and check the pool's settings).
      if (workers > 0) poolSettings(userConfig, workers);
      server = new Host(userConfig, { logger, port: args.port });
      // What the manager's clients watch (see loadedFiles): taken as the config was loaded.
      if (env.managed) server.loadedFiles = loadedFiles(undefined, { nodeModules });
    }
    try {
      server.statusJson();
    } catch (err) {
      throw new ConfigError(`Config file ${configFile} cannot be shown in /status as JSON: ${err.message.split('\n')[0]}`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      fail(configFile === undefined || err.message.includes(configFile) ? err.message : `${err.message} (config file ${configFile})`);
    }
    if (err instanceof runtime.RuntimeDirError) fail(err.message);
    if (err.code && err.syscall) fail(err.message);
    fail(`Error loading config file ${configFile || args.file}: ${String(err && err.message).split('\n')[0]}`);
  }

  if (args.config) {
    // Exits once written: an async set-up may have opened handles (a timer, a socket) that
    // would keep the process up, and the Python client waits for its exit.
    process.stdout.write(`${server.statusJson()}\n`, () => process.exit(0));
    return;
  }
  if (args.detached) {
    runDetached({ args, kind, configFile, logfile, fail });
    return;
  }
  serve(server, { json: args.json, managed: env.managed, detachedCopy: env.detachedCopy, fail });
}

// A logfile that cannot be used safely is a one-line error, before anything is
// written to it (and fail() does not write to it either: it would be refused again).
function openLogfileOrFail(file) {
  try {
    return runtime.openLogfile(file);
  } catch (err) {
    const reason = err instanceof runtime.RuntimeDirError ? err.message : `cannot open the logfile ${file}: ${err.message}`;
    process.stderr.write(`js-host: ${reason}\n`);
    process.exit(1);
  }
  return null;
}

module.exports = { run };
