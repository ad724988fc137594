'use strict';

// A server run as this process's one job (cli.js builds it): listening, then
// the status line on stdout (--json) or `<name> listening at <address>`; log
// lines flushed on any exit, an uncaught exception logged before exit 1;
// SIGTERM/SIGINT close it gracefully and a second signal exits 1 at once;
// SIGHUP reloads a pool's workers; a managed host ends with its manager and
// reports its reloads to it; a --detached copy sends its status to its parent.

const { ignoreConsoleErrors } = require('./logger');
const { Manager } = require('./manager');
const { PoolHost } = require('./pool_host');
const version = require('./version');

/**
 * Listen and serve until a signal (or the manager, for a managed host) ends it.
 * @param {object} server a Host, PoolHost or Manager
 * @param {object} options
 * @param {boolean} options.json print the status line once listening (--json)
 * @param {boolean} options.managed started by a manager (JS_HOST_MANAGED)
 * @param {boolean} options.detachedCopy the copy of a --detached command (JS_HOST_DETACHED_COPY)
 * @param {Function} options.fail the command's one-line error, exit 1
 */
function serve(server, { json, managed, detachedCopy, fail }) {
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
        if (managed && process.connected) process.send(err ? { reloadFailed: err.message } : { reloaded: statusLine(server, managed) });
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
    if (json) {
      process.stdout.write(`${statusLine(server, managed)}\n`);
    } else if (server.config.outputOnListen) {
      process.stdout.write(`${server.name} listening at ${server.getAddress()}\n`);
    }
    if (managed) {
      // Only the status line goes to the manager; the logfile gets the rest.
      logger.disableConsole();
      watchManager(server);
    }
    logger.releaseConsole();
    if (detachedCopy && process.send) {
      process.send({ status: server.statusJson() }, () => process.disconnect());
    }
  });
}

// The status line of --json; a managed host adds its loaded files, for its manager
// (which shows them to its authenticated clients only, never in GET /status).
function statusLine(server, managed) {
  if (!managed || server.loadedFiles === undefined) return server.statusJson();
  return JSON.stringify({ ...JSON.parse(server.statusJson()), loadedFiles: server.loadedFiles });
}

function stopServer(server, reason) {
  if (server instanceof Manager) server.stop(() => exitWith(server, 0, reason));
  else server.close(() => exitWith(server, 0, reason));
}

/** Log why the process ends, then exit with `code` once the log is written. */
function exitWith(server, code, reason) {
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

module.exports = { exitWith, serve };
