#!/usr/bin/env node
'use strict';

// js-host <config> [-c|--config] [-j|--json] [-p|--port N] [-l|--logfile F]
//                  [-m|--manager] [-d|--detached] [-v|--version] [-h|--help]
//                  [--workers N|auto] [--log-format text|json]
// Same outputs as js-host 0.11's CLI. Errors are one line on stderr, exit 1.
// With workers (the config's `workers`, --workers, or 1 for a host started by
// the manager), the host is a master that runs the functions in a pool of
// worker processes (pool_host.js); SIGHUP then reloads them without downtime.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { parseArgs, UsageError, USAGE } = require('../lib/args');
const { loadedFiles } = require('../lib/code_version');
const { ConfigError, loadConfigFile, sourceMapsOn, watchNodeModules } = require('../lib/config');
const { Host } = require('../lib/host');
const { ignoreConsoleErrors } = require('../lib/logger');
const { Manager } = require('../lib/manager');
const { PoolHost } = require('../lib/pool_host');
const { poolSettings, workerCount } = require('../lib/pool_settings');
const runtime = require('../lib/runtime');
const { createLogger } = require('../lib/server_config');
const version = require('../lib/version');

// How long `--detached` waits for the copy to listen.
const DETACHED_START_TIMEOUT_MS = 60000;

// Set by the parent process; removed so that user code does not inherit them.
const MANAGED = process.env.JS_HOST_MANAGED === '1';
const DETACHED_COPY = process.env.JS_HOST_DETACHED_COPY === '1';
delete process.env.JS_HOST_MANAGED;
delete process.env.JS_HOST_DETACHED_COPY;

let logfile = null;
// The logfile's format, once known (--log-format, or the config's logFormat).
let jsonLogs = false;

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

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
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
    const sourceMaps = !args.manager && sourceMapsOn(userConfig, MANAGED || startedWithMaps);
    if (!args.manager) process.setSourceMapsEnabled(sourceMaps);
    const nodeModules = !args.manager && watchNodeModules(userConfig);
    const serving = !args.config && !args.detached;
    const logger = createLogger(userConfig, { holdConsole: args.json, format: args.logFormat });
    jsonLogs = logger.json;
    if (logfile !== null && serving) logger.addFile(logfile, openLogfileOrFail(logfile));
    // A manager's hosts run their functions in one worker unless the config says otherwise.
    const workers = args.manager ? 0 : workerCount(userConfig, args.workers, MANAGED ? 1 : 0);
    if (args.manager) {
      const options = { logger, port: args.port };
      if (serving) {
        options.runtimeDir = runtime.ensureRuntimeDir();
        options.secret = runtime.getOrCreateSecret(options.runtimeDir);
        options.onExit = (reason) => exit(server, 0, reason);
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
          exit(server, 1, 'no worker can start');
        },
      });
    } else {
      // --config and --detached show what a single-process host shows (and check the pool's settings).
      if (workers > 0) poolSettings(userConfig, workers);
      server = new Host(userConfig, { logger, port: args.port });
      // What the manager's clients watch (see loadedFiles): taken as the config was loaded.
      if (MANAGED) server.loadedFiles = loadedFiles(undefined, { nodeModules });
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
    runDetached(args, kind, configFile);
    return;
  }
  serve(server, args);
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

function serve(server, args) {
  const { logger } = server;
  ignoreConsoleErrors();
  // Log lines are written in batches: whatever is pending goes out on any exit.
  process.on('exit', () => logger.flushSync());
  process.on('uncaughtException', (err) => {
    logger.errorToStderr(`${server.name}: uncaught exception, exiting: ${err && err.stack ? err.stack : err}`);
    logger.flushSync();
    process.exit(1);
  });

  let signals = 0;
  const onSignal = (signal) => {
    signals += 1;
    if (signals > 1) {
      logger.error(`${server.name}: second ${signal}, exiting now`);
      logger.flushSync();
      process.exit(1);
    }
    logger.info(`${server.name}: ${signal} received, closing (send it again to exit at once)`);
    stopServer(server, `${signal}`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  if (server instanceof PoolHost) {
    process.on('SIGHUP', () => {
      logger.info('Host: SIGHUP received, reloading the config in new workers');
      server.reload((err) => {
        // A manager's /host/restart waits for this.
        if (MANAGED && process.connected) process.send(err ? { reloadFailed: err.message } : { reloaded: statusLine(server) });
      });
    });
  }

  server.listen((err) => {
    if (err && err.workerStart) {
      logger.flushSync();
      fail(err.message);
    }
    if (err) {
      const reason = err.code === 'EADDRINUSE' ? 'address already in use (EADDRINUSE)' : err.message;
      logger.flushSync();
      fail(`${server.name} cannot listen at ${server.getAddress()}: ${reason}`);
    }
    logger.info(`${server.name} listening at ${server.getAddress()} (pid ${process.pid}, js-host ${version})`);
    if (args.json) {
      process.stdout.write(`${statusLine(server)}\n`);
    } else if (server.config.outputOnListen) {
      process.stdout.write(`${server.name} listening at ${server.getAddress()}\n`);
    }
    if (MANAGED) {
      // Only the status line goes to the manager; the logfile gets the rest.
      logger.disableConsole();
      watchManager(server);
    }
    logger.releaseConsole();
    if (DETACHED_COPY && process.send) {
      process.send({ status: server.statusJson() }, () => process.disconnect());
    }
  });
}

// The status line of --json; a managed host adds its loaded files, for its manager
// (which shows them to its authenticated clients only, never in GET /status).
function statusLine(server) {
  if (!MANAGED || server.loadedFiles === undefined) return server.statusJson();
  return JSON.stringify({ ...JSON.parse(server.statusJson()), loadedFiles: server.loadedFiles });
}

function stopServer(server, reason) {
  if (server instanceof Manager) server.stop(() => exit(server, 0, reason));
  else server.close(() => exit(server, 0, reason));
}

function exit(server, code, reason) {
  server.logger.info(`${server.name}: exiting (${reason})`);
  server.logger.close(() => process.exit(code));
}

// A managed host ends with its manager, even one that was killed with SIGKILL:
// the IPC channel from the manager closes then.
function watchManager(server) {
  if (!process.channel) return;
  process.channel.unref();
  process.on('disconnect', () => {
    server.logger.info('Host: the manager has exited');
    stopServer(server, 'manager exited');
  });
}

// Start a copy of this command in a new session (`--json`, no `--detached`),
// print its status once it listens and exit; its console goes to a file in
// the runtime dir.
function runDetached(args, kind, configFile) {
  let output;
  let fd;
  try {
    output = runtime.detachedOutputFile(runtime.ensureRuntimeDir(), kind, configFile);
    runtime.capLogfile(output);
    fd = runtime.openLogfile(output);
  } catch (err) {
    fail(err.message);
  }
  const offset = fs.fstatSync(fd).size;
  const childArgs = [__filename, configFile, '--json'];
  if (args.manager) childArgs.push('--manager');
  if (args.port !== undefined) childArgs.push('--port', String(args.port));
  if (args.workers !== undefined) childArgs.push('--workers', String(args.workers));
  if (args.logFormat !== undefined) childArgs.push('--log-format', args.logFormat);
  if (logfile !== null) childArgs.push('--logfile', logfile);
  const child = spawn(process.execPath, [...process.execArgv, ...childArgs], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env, JS_HOST_DETACHED_COPY: '1' },
  });
  fs.closeSync(fd);

  const readOutput = () => {
    let readFd;
    try {
      readFd = runtime.openChecked(output, fs.constants.O_RDONLY, { singleLink: true });
      const size = fs.fstatSync(readFd).size;
      const buffer = Buffer.alloc(Math.max(0, size - offset));
      const length = fs.readSync(readFd, buffer, 0, buffer.length, offset);
      return buffer.subarray(0, length).toString('utf8').trim();
    } catch {
      return '';
    } finally {
      if (readFd !== undefined) fs.closeSync(readFd);
    }
  };
  const timer = setTimeout(() => {
    child.kill();
    process.stderr.write(`js-host: the detached ${kind} did not start within ${DETACHED_START_TIMEOUT_MS}ms\n${readOutput()}\n`);
    process.exit(1);
  }, DETACHED_START_TIMEOUT_MS);

  child.on('message', (message) => {
    if (!message || typeof message.status !== 'string') return;
    clearTimeout(timer);
    child.removeAllListeners('exit');
    child.disconnect();
    child.unref();
    // Exits once written, whatever handles the config's set-up opened in this process.
    process.stdout.write(`${message.status}\n`, () => process.exit(0));
  });
  child.on('exit', (code, signal) => {
    clearTimeout(timer);
    const text = readOutput() || `it exited (${signal || `exit code ${code}`}) without output`;
    process.stderr.write(`${text}\n`);
    process.exit(1);
  });
}

main().catch((err) => fail(`unexpected error: ${err && err.stack ? err.stack : err}`));
