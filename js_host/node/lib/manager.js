'use strict';

// The development manager: starts one host per config file on demand, counts
// the connections of its clients, stops a host `disconnectTimeout` ms after its
// last connection closed (or after its start, if nobody connects), and asks to
// exit once it has no host left: after the last host stopped (/host/stop or
// timeout), after the last connection to a crashed host closed, or when it got
// no host within its idle timeout (see idleExitTimeout). HTTP API
// (all POST with a JSON body {"config": "<absolute path>"}, except GET /status):
//   /status  /manager/stop
//   /host/start  /host/stop  /host/restart  /host/status  /host/connect
//   /host/disconnect (also {"connection": id})
// Same answers as js-host 0.11, plus: loopback only, every request
// authenticated by a challenge-response on the user's secret (see security.js;
// "auth" in /status announces the scheme), crashed hosts are forgotten (and
// logged; /host/restart brings one back on its port), a host that fails to
// start gets a 500 with the end of its logfile.

const crypto = require('node:crypto');
const path = require('node:path');
const { finished } = require('node:stream');
const { AuthenticatedServer } = require('./authenticated_server');
const { ConfigError } = require('./config');
const { describeExit, logTail, spawnHost, stopProcess } = require('./host_process');
const { capLogfile, ensurePrivateDir, managedHostLogfile, RUNTIME_DIR_WHAT, runtimeDirSetting } = require('./runtime');
const { AUTH_NAME, isLoopbackAddress } = require('./security');

// A manager without hosts exits after IDLE_EXIT_FACTOR x disconnectTimeout
// (60 s with the default 5 s), never sooner than IDLE_EXIT_MIN_MS: time for the
// client that started it to ask for its first host.
const IDLE_EXIT_FACTOR = 12;
const IDLE_EXIT_MIN_MS = 2000;

const HOST_ACTIONS = new Set(['start', 'stop', 'restart', 'status', 'connect', 'disconnect']);

class Manager extends AuthenticatedServer {
  static defaults = {
    disconnectTimeout: 5 * 1000,
    stopManagerIfNoConnections: true,
    ...AuthenticatedServer.defaults,
  };

  /**
   * @param {object} config
   * @param {object} [options]
   * @param {string} [options.runtimeDir] where managed host logfiles go
   * @param {{secret: string, file: string}} [options.secret] the key of the
   *   challenge-response; without it every request is refused
   * @param {Function} [options.onExit] called when the manager wants its process to end
   */
  constructor(config, options = {}) {
    super(config, options);
    if (!isLoopbackAddress(this.config.address)) {
      throw new ConfigError(
        `A manager only listens on a loopback address (127.0.0.1, ::1, localhost), not ${JSON.stringify(this.config.address)}: ` +
          'managers are for development. Run hosts directly in production.',
      );
    }
    const timeout = Number(this.config.disconnectTimeout);
    if (!Number.isFinite(timeout) || timeout < 0) {
      throw new ConfigError(`disconnectTimeout must be a number of milliseconds, not ${JSON.stringify(this.config.disconnectTimeout)}`);
    }
    this.disconnectTimeout = timeout;
    this.idleExitTimeout = Math.max(IDLE_EXIT_MIN_MS, IDLE_EXIT_FACTOR * timeout);
    this.idleTimer = null;
    this.runtimeDir = options.runtimeDir || null;
    this.onExit = options.onExit || (() => {});
    this.hosts = new Map(); // config path -> record of the running host
    this.locks = new Map(); // config path -> promise of the start/stop/restart in progress
    this.starting = new Set(); // config paths of the hosts being started
    // config path -> record of a host that exited by itself, kept for
    // /host/restart while it has connections (or for disconnectTimeout if none)
    this.crashed = new Map();
    this.children = new Set(); // every host process alive, starting ones included
    this.stopping = false;
  }

  /** Listen, then exit if no host is asked for within idleExitTimeout. */
  listen(callback) {
    super.listen((err) => {
      if (!err) this.scheduleIdleExit();
      callback(err);
    });
  }

  getStatus() {
    return { ...super.getStatus(), auth: AUTH_NAME };
  }

  /** An authenticated request, its body read and parsed. */
  dispatch(req, res, data) {
    const query = req.url.indexOf('?');
    const pathname = query === -1 ? req.url : req.url.slice(0, query);
    if (pathname === '/status') {
      this.sendStatus(req, res);
      return;
    }
    if (req.method !== 'POST') {
      this.notFound(req, res);
      return;
    }
    if (pathname === '/manager/stop') {
      res.shouldKeepAlive = false;
      this.send(req, res, 200, 'Stopping...');
      res.once('finish', () => this.stop(() => this.onExit('stopped by /manager/stop')));
      return;
    }
    const action = pathname.startsWith('/host/') ? pathname.slice(6) : null;
    if (!HOST_ACTIONS.has(action)) {
      this.notFound(req, res);
      return;
    }
    const config = data.config;
    if (!config) {
      this.send(req, res, 500, 'No `config` data provided');
    } else if (typeof config !== 'string' || !path.isAbsolute(config)) {
      this.send(req, res, 400, `Bad request: config must be the absolute path of a config file, not ${JSON.stringify(config)}`);
    } else {
      this[`${action}Action`](req, res, config, data);
    }
  }

  serializeHost(record) {
    return {
      output: record.output,
      logfile: record.logfile,
      config: record.config,
      connections: record.connections,
    };
  }

  startAction(req, res, config) {
    // A start that arrives while the same host is starting gets that host
    // (200), not 'Host already running': both clients asked for the same thing.
    const joined = this.starting.has(config);
    this.cancelIdleExit();
    let failed = false;
    this.withLock(config, async () => {
      const running = this.hosts.get(config);
      if (running !== undefined) {
        if (joined) this.sendJson(req, res, 200, this.serializeHost(running));
        else this.send(req, res, 500, 'Host already running');
        return;
      }
      this.starting.add(config);
      this.forgetCrashed(config);
      try {
        const record = await this.startHost(config);
        this.hosts.set(config, record);
        // Stopped like after a last disconnect, unless a client connects.
        this.scheduleStop(record);
        this.sendJson(req, res, 200, this.serializeHost(record));
      } catch (err) {
        failed = true;
        this.logger.error(`Manager: error starting host: ${err.message}`);
        this.send(req, res, 500, err.message);
      } finally {
        this.starting.delete(config);
      }
    }).then(() => {
      // Back to a manager without hosts: wait for a start again (the user may fix the config).
      if (failed && !this.hasHosts()) this.scheduleIdleExit();
    });
  }

  stopAction(req, res, config) {
    let stopped = false;
    this.withLock(config, async () => {
      const record = this.hosts.get(config);
      if (record === undefined) {
        this.send(req, res, 500, `No known host with config: ${config}`);
        return;
      }
      const body = this.serializeHost(record);
      this.forget(record);
      await stopProcess(record.process);
      this.logger.info(`Manager: stopped child host with config: ${config}`);
      stopped = true;
      this.sendJson(req, res, 200, body);
    }).then(() => {
      if (stopped) this.exitAfterResponse(res);
    });
  }

  restartAction(req, res, config) {
    let failed = false;
    this.withLock(config, async () => {
      const old = this.hosts.get(config) || this.crashed.get(config);
      if (old === undefined) {
        this.send(req, res, 500, `No known host with config: ${config}`);
        return;
      }
      // The new host keeps the port, the logfile, the connections and a
      // pending stop of the old one (a crashed one is revived the same way).
      this.forgetCrashed(config);
      await stopProcess(old.process);
      try {
        const record = await this.startHost(config, {
          port: old.port,
          logfile: old.logfile,
          connections: old.connections,
        });
        record.stopTimer = old.stopTimer;
        if (old.crashed && record.connections.length === 0) this.scheduleStop(record);
        this.hosts.set(config, record);
        this.sendJson(req, res, 200, this.serializeHost(record));
      } catch (err) {
        failed = true;
        this.forget(old);
        this.logger.error(`Manager: error restarting host: ${err.message}`);
        this.send(req, res, 500, err.message);
      }
    }).then(() => {
      if (failed) this.exitAfterResponse(res);
    });
  }

  statusAction(req, res, config) {
    const record = this.hosts.get(config);
    if (record === undefined) this.sendJson(req, res, 200, { started: false });
    else this.sendJson(req, res, 200, { started: true, host: this.serializeHost(record) });
  }

  connectAction(req, res, config) {
    const record = this.hosts.get(config);
    if (record === undefined) {
      this.send(req, res, 500, `No known host with config: ${config}`);
      return;
    }
    if (record.stopTimer !== null) {
      clearTimeout(record.stopTimer);
      record.stopTimer = null;
      this.logger.info(`Manager: the host with config ${config} has had its stop timeout cancelled`);
    }
    const body = this.serializeHost(record);
    body.connection = `${Date.now()}-${crypto.randomUUID()}`;
    record.connections.push(body.connection);
    this.logger.info(`Manager: connection ${body.connection} opened to host with config ${config}`);
    this.sendJson(req, res, 200, body);
  }

  disconnectAction(req, res, config, data) {
    const connection = data.connection;
    if (!connection) {
      this.send(req, res, 500, 'No `connection` data provided');
      return;
    }
    const record = this.hosts.get(config);
    const body = { started: record !== undefined, config, stopTimeout: null };
    if (record === undefined) {
      body.status = 'Host has already stopped';
      const closed = this.closeCrashedConnection(config, connection);
      this.sendJson(req, res, 200, body);
      if (closed) this.exitAfterResponse(res);
      return;
    }
    this.logger.info(`Manager: connection ${connection} closed to host with config ${config}`);
    const index = record.connections.indexOf(connection);
    if (index !== -1) {
      record.connections.splice(index, 1);
      if (record.connections.length === 0) {
        this.scheduleStop(record);
        this.logger.info(
          `Manager: the host with config ${config} no longer has any connections. ` +
            `Stopping host in ${this.disconnectTimeout}ms`,
        );
        body.stopTimeout = this.disconnectTimeout;
        body.status = `Disconnected. Stopping host in ${this.disconnectTimeout}ms`;
      }
    }
    if (!body.status) body.status = 'Disconnected';
    this.sendJson(req, res, 200, body);
  }

  /** A crashed host's client went away: forget the host once it has no clients. */
  closeCrashedConnection(config, connection) {
    const crashed = this.crashed.get(config);
    const index = crashed === undefined ? -1 : crashed.connections.indexOf(connection);
    if (index === -1) return false;
    this.logger.info(`Manager: connection ${connection} closed to crashed host with config ${config}`);
    crashed.connections.splice(index, 1);
    if (crashed.connections.length === 0) this.forgetCrashed(config);
    return true;
  }

  scheduleStop(record) {
    if (record.stopTimer !== null) clearTimeout(record.stopTimer);
    record.stopTimer = setTimeout(() => this.timedStop(record.config), this.disconnectTimeout);
  }

  timedStop(config) {
    this.withLock(config, async () => {
      const record = this.hosts.get(config);
      if (record === undefined || record.connections.length > 0) return;
      this.forget(record);
      await stopProcess(record.process);
      this.logger.info(`Manager: stopped child host with config: ${config}`);
    }).then(() => this.exitIfNoHosts());
  }

  /** A host running, being started/stopped/restarted, or crashed and still remembered. */
  hasHosts() {
    return this.hosts.size > 0 || this.locks.size > 0 || this.crashed.size > 0;
  }

  exitIfNoHosts() {
    if (!this.config.stopManagerIfNoConnections || this.stopping) return;
    if (!this.hasHosts()) {
      this.logger.info('Manager: all hosts have stopped. Shutting down manager');
      this.stop(() => this.onExit('no hosts left'));
    }
  }

  /** exitIfNoHosts() once `res` has been sent, so that the client gets its answer first. */
  exitAfterResponse(res) {
    finished(res, () => this.exitIfNoHosts());
  }

  scheduleIdleExit() {
    if (!this.config.stopManagerIfNoConnections || this.stopping) return;
    this.cancelIdleExit();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.hasHosts()) return;
      this.logger.info(`Manager: no host was started within ${this.idleExitTimeout}ms`);
      this.exitIfNoHosts();
    }, this.idleExitTimeout);
  }

  cancelIdleExit() {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** Run `task` after any start/stop/restart of the same config has finished. */
  withLock(config, task) {
    const previous = this.locks.get(config) || Promise.resolve();
    const current = previous.then(task).catch((err) => {
      this.logger.error(`Manager: ${err.stack}`);
    });
    this.locks.set(config, current);
    return current.then(() => {
      if (this.locks.get(config) === current) this.locks.delete(config);
    });
  }

  forget(record) {
    if (record.stopTimer !== null) clearTimeout(record.stopTimer);
    record.stopTimer = null;
    record.process.expectedExit = true;
    if (this.hosts.get(record.config) === record) this.hosts.delete(record.config);
    this.logger.info(`Manager: removed record of host with config: ${record.config}`);
  }

  forgetCrashed(config) {
    const record = this.crashed.get(config);
    if (record === undefined) return;
    if (record.stopTimer !== null) clearTimeout(record.stopTimer);
    record.stopTimer = null;
    this.crashed.delete(config);
    this.logger.info(`Manager: removed record of crashed host with config: ${config}`);
  }

  /** Spawn `js-host <config> --port N --json --logfile F`; resolves once it listens. */
  startHost(config, { port = 0, logfile = null, connections = [] } = {}) {
    if (this.stopping) return Promise.reject(new Error('The manager is stopping'));
    const file = logfile || managedHostLogfile(this.runtimeDir, config);
    this.logger.info(`Manager: starting child host with config: ${config}`);
    try {
      // Checked again at every start: a cleaner of /tmp may have removed it since,
      // and another user made something else of the name.
      if (this.runtimeDir !== null) {
        ensurePrivateDir(this.runtimeDir, { what: RUNTIME_DIR_WHAT, setting: runtimeDirSetting() });
      }
    } catch (err) {
      return Promise.reject(new Error(`Host with config ${config} failed to start: ${err.message}`));
    }
    try {
      if (capLogfile(file)) this.logger.info(`Manager: cut the beginning of the logfile ${file}`);
    } catch (err) {
      this.logger.warn(`Manager: cannot cap the logfile ${file}: ${err.message}`);
    }
    return spawnHost(config, {
      port,
      logfile: file,
      onSpawn: (child) => {
        this.children.add(child);
        child.on('exit', () => this.children.delete(child));
      },
    }).then(({ child, line, status }) => {
      const record = {
        output: `${line}\n`,
        config,
        process: child,
        logfile: file,
        connections,
        port: status.config.port,
        stopTimer: null,
      };
      child.on('exit', (code, signal) => this.onHostExit(record, code, signal));
      this.logger.info(`Manager: started host with config ${config} at ${status.config.address}:${status.config.port}`);
      return record;
    });
  }

  onHostExit(record, code, signal) {
    if (record.process.expectedExit) return;
    this.forget(record);
    // Remembered for /host/restart: a crashed host comes back on its port.
    record.crashed = true;
    this.crashed.set(record.config, record);
    this.logger.error(
      `Manager: the host with config ${record.config} exited unexpectedly (${describeExit(code, signal)}). ` +
        `${logTail(record.logfile, '')}`,
    );
    // No client to restart it: forgotten when it would have been stopped.
    if (record.connections.length === 0) {
      record.stopTimer = setTimeout(() => {
        if (this.crashed.get(record.config) !== record) return;
        this.forgetCrashed(record.config);
        this.exitIfNoHosts();
      }, this.disconnectTimeout);
    }
  }

  /** Stop every host, then close the server; `callback` once all is done. */
  stop(callback) {
    if (this.stopping) return;
    this.stopping = true;
    this.cancelIdleExit();
    for (const config of Array.from(this.crashed.keys())) this.forgetCrashed(config);
    for (const record of this.hosts.values()) {
      if (record.stopTimer !== null) clearTimeout(record.stopTimer);
    }
    this.hosts.clear();
    const children = Array.from(this.children);
    if (children.length > 0) this.logger.info(`Manager: stopping ${children.length} host(s)...`);
    Promise.all(children.map(stopProcess)).then(() => {
      this.logger.info('Manager: stopping process...');
      this.close(callback);
    });
  }
}

module.exports = { Manager };
