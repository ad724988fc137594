'use strict';

// The development manager: starts one host per config file on demand, counts
// the connections of its clients, stops a host `disconnectTimeout` ms after its
// last connection closed (or idleExitTimeout after its start, if nobody connects), and asks to
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
// start gets a 500 with the end of its logfile. The records of the hosts, their
// locks, processes and stop timers are host_registry.js's; this module answers
// the requests and decides when the manager exits.

const path = require('node:path');
const { finished } = require('node:stream');
const { AuthenticatedServer } = require('./authenticated_server');
const { ConfigError } = require('./config');
const { logTail, reloadHost, stopProcess } = require('./host_process');
const { HostRegistry } = require('./host_registry');
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
    this.onExit = options.onExit || (() => {});
    // The running and crashed hosts, their locks, processes and stop timers.
    this.registry = new HostRegistry({
      logger: this.logger,
      runtimeDir: options.runtimeDir || null,
      disconnectTimeout: timeout,
      onHostGone: () => this.exitIfNoHosts(),
    });
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
      // Added to js-host 0.11's shape: which host process this is (see crashed in /host/status).
      id: record.id,
      // Its process id: a development client checks that it is alive before each request
      // (one cheap system call) rather than asking the manager (see js_host/reloader.py).
      pid: record.process.pid,
    };
  }

  startAction(req, res, config) {
    // A start that arrives while the same host is starting gets that host
    // (200), not 'Host already running': both clients asked for the same thing.
    const registry = this.registry;
    const joined = registry.starting.has(config);
    this.cancelIdleExit();
    let failed = false;
    registry.withLock(config, async () => {
      const running = registry.hosts.get(config);
      if (running !== undefined) {
        if (joined) this.sendJson(req, res, 200, this.serializeHost(running));
        else this.send(req, res, 500, 'Host already running');
        return;
      }
      registry.starting.add(config);
      registry.forgetCrashed(config);
      try {
        const record = await registry.startHost(config);
        registry.hosts.set(config, record);
        // disconnectTimeout runs from a last /host/disconnect, as in js-host 0.11: from the
        // start, a short one would stop the host before the client that started it connects.
        // A host nobody connects to at all (its client died in between) is stopped after the
        // manager's idle timeout, so that nothing is left running.
        registry.scheduleStop(record, this.idleExitTimeout);
        this.sendJson(req, res, 200, this.serializeHost(record));
      } catch (err) {
        failed = true;
        this.logger.error(`Manager: error starting host: ${err.message}`);
        this.send(req, res, 500, err.message);
      } finally {
        registry.starting.delete(config);
      }
    }).then(() => {
      // Back to a manager without hosts: wait for a start again (the user may fix the config).
      if (failed && !this.registry.hasHosts()) this.scheduleIdleExit();
    });
  }

  stopAction(req, res, config) {
    let stopped = false;
    this.registry.withLock(config, async () => {
      const record = this.registry.hosts.get(config);
      if (record === undefined) {
        this.send(req, res, 500, `No known host with config: ${config}`);
        return;
      }
      const body = this.serializeHost(record);
      await this.registry.stopHost(record);
      stopped = true;
      this.sendJson(req, res, 200, body);
    }).then(() => {
      if (stopped) this.exitAfterResponse(res);
    });
  }

  restartAction(req, res, config) {
    const registry = this.registry;
    let failed = false;
    registry.withLock(config, async () => {
      const old = registry.hosts.get(config) || registry.crashed.get(config);
      if (old === undefined) {
        this.send(req, res, 500, `No known host with config: ${config}`);
        return;
      }
      if (!old.crashed && old.pool) {
        await this.reloadPool(req, res, old);
        return;
      }
      // The new host keeps the port, the logfile, the connections and a
      // pending stop of the old one (a crashed one is revived the same way).
      registry.forgetCrashed(config);
      await stopProcess(old.process);
      try {
        const record = await registry.startHost(config, {
          port: old.port,
          logfile: old.logfile,
          connections: old.connections,
        });
        record.stopTimer = old.stopTimer;
        if (old.crashed && record.connections.length === 0) registry.scheduleStop(record);
        registry.hosts.set(config, record);
        this.sendJson(req, res, 200, this.serializeHost(record));
      } catch (err) {
        failed = true;
        registry.forget(old);
        this.logger.error(`Manager: error restarting host: ${err.message}`);
        this.send(req, res, 500, err.message);
      }
    }).then(() => {
      if (failed) this.exitAfterResponse(res);
    });
  }

  /**
   * Restart a host that runs a pool of workers by reloading it: same process,
   * new workers with the new code, no call lost. A config that fails to load
   * is a 500 with the reason; the host keeps serving the code it had.
   */
  async reloadPool(req, res, record) {
    try {
      const line = await reloadHost(record.process);
      record.output = `${line}\n`;
      this.logger.info(`Manager: reloaded host with config ${record.config}`);
      this.sendJson(req, res, 200, this.serializeHost(record));
    } catch (err) {
      this.logger.error(`Manager: error reloading host: ${err.message}`);
      this.send(
        req,
        res,
        500,
        `Host with config ${record.config} failed to reload: ${err.message}. ` +
          `It keeps serving the code it had loaded.\n${logTail(record.logfile, '')}`,
      );
    }
  }

  statusAction(req, res, config) {
    const record = this.registry.hosts.get(config);
    if (record !== undefined) {
      this.sendJson(req, res, 200, { started: true, host: this.serializeHost(record) });
      return;
    }
    // A host that exited by itself and is still remembered: which process, and how it ended.
    const crashed = this.registry.crashed.get(config);
    const body = { started: false };
    if (crashed !== undefined) body.crashed = { id: crashed.id, exit: crashed.exit, logfile: crashed.logfile };
    this.sendJson(req, res, 200, body);
  }

  connectAction(req, res, config) {
    const record = this.registry.hosts.get(config);
    if (record === undefined) {
      this.send(req, res, 500, `No known host with config: ${config}`);
      return;
    }
    const connection = this.registry.connect(record);
    this.sendJson(req, res, 200, { ...this.serializeHost(record), connection });
  }

  disconnectAction(req, res, config, data) {
    const connection = data.connection;
    if (!connection) {
      this.send(req, res, 500, 'No `connection` data provided');
      return;
    }
    const record = this.registry.hosts.get(config);
    const body = { started: record !== undefined, config, stopTimeout: null };
    if (record === undefined) {
      body.status = 'Host has already stopped';
      const closed = this.registry.closeCrashedConnection(config, connection);
      this.sendJson(req, res, 200, body);
      if (closed) this.exitAfterResponse(res);
      return;
    }
    this.logger.info(`Manager: connection ${connection} closed to host with config ${config}`);
    if (this.registry.disconnect(record, connection)) {
      this.logger.info(
        `Manager: the host with config ${config} no longer has any connections. ` +
          `Stopping host in ${this.disconnectTimeout}ms`,
      );
      body.stopTimeout = this.disconnectTimeout;
      body.status = `Disconnected. Stopping host in ${this.disconnectTimeout}ms`;
    } else {
      body.status = 'Disconnected';
    }
    this.sendJson(req, res, 200, body);
  }

  exitIfNoHosts() {
    if (!this.config.stopManagerIfNoConnections || this.stopping) return;
    if (!this.registry.hasHosts()) {
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
      if (this.registry.hasHosts()) return;
      this.logger.info(`Manager: no host was started within ${this.idleExitTimeout}ms`);
      this.exitIfNoHosts();
    }, this.idleExitTimeout);
  }

  cancelIdleExit() {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** Stop every host, then close the server; `callback` once all is done. */
  stop(callback) {
    if (this.stopping) return;
    this.stopping = true;
    this.cancelIdleExit();
    this.registry.stopAll().then(() => {
      this.logger.info('Manager: stopping process...');
      this.close(callback);
    });
  }
}

module.exports = { Manager };
