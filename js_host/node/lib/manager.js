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
// locks, processes and stop timers are host_registry.js's, the answer of each
// /host/ action manager_actions.js's; this module routes the requests and
// decides when the manager exits.

const path = require('node:path');
const { finished } = require('node:stream');
const { AuthenticatedServer } = require('./authenticated_server');
const { ConfigError } = require('./config');
const { HostRegistry } = require('./host_registry');
const { HOST_ACTIONS } = require('./manager_actions');
const { AUTH_NAME, isLoopbackAddress } = require('./security');

// A manager without hosts exits after IDLE_EXIT_FACTOR x disconnectTimeout
// (60 s with the default 5 s), never sooner than IDLE_EXIT_MIN_MS: time for the
// client that started it to ask for its first host.
const IDLE_EXIT_FACTOR = 12;
const IDLE_EXIT_MIN_MS = 2000;

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
    const action = pathname.startsWith('/host/') ? HOST_ACTIONS.get(pathname.slice(6)) : undefined;
    if (action === undefined) {
      this.notFound(req, res);
      return;
    }
    const config = data.config;
    if (!config) {
      this.send(req, res, 500, 'No `config` data provided');
    } else if (typeof config !== 'string' || !path.isAbsolute(config)) {
      this.send(req, res, 400, `Bad request: config must be the absolute path of a config file, not ${JSON.stringify(config)}`);
    } else {
      action(this, req, res, config, data);
    }
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
