'use strict';

// The hosts a manager runs, one per config file: the records of the running
// ones and of the crashed ones still remembered for /host/restart, the
// per-config lock that keeps a start, stop or restart from overlapping
// another, every child process alive, and the timers that stop a host without
// connections (or forget a crashed one). The manager (manager.js) decides what
// to do on a request and when to exit; this module keeps the books.

const crypto = require('node:crypto');
const { describeExit, logTail, spawnHost, stopProcess } = require('./host_process');
const { capLogfile, ensurePrivateDir, managedHostLogfile, RUNTIME_DIR_WHAT, runtimeDirSetting } = require('./runtime');

class HostRegistry {
  /**
   * @param {object} options
   * @param {object} options.logger
   * @param {string|null} options.runtimeDir where managed host logfiles go
   * @param {number} options.disconnectTimeout ms before a host without connections is stopped
   * @param {Function} options.onHostGone called after a host went without a request
   *   asking for it (a timed stop, a crashed host forgotten), so that the manager
   *   can check whether it has any host left
   */
  constructor({ logger, runtimeDir, disconnectTimeout, onHostGone }) {
    this.logger = logger;
    this.runtimeDir = runtimeDir;
    this.disconnectTimeout = disconnectTimeout;
    this.onHostGone = onHostGone;
    this.hosts = new Map(); // config path -> record of the running host
    this.locks = new Map(); // config path -> promise of the start/stop/restart in progress
    this.starting = new Set(); // config paths of the hosts being started
    // config path -> record of a host that exited by itself, kept for
    // /host/restart while it has connections (or for disconnectTimeout if none)
    this.crashed = new Map();
    this.children = new Set(); // every host process alive, starting ones included
    this.stopping = false;
  }

  /** A host running, being started/stopped/restarted, or crashed and still remembered. */
  hasHosts() {
    return this.hosts.size > 0 || this.locks.size > 0 || this.crashed.size > 0;
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

  /** Forget `record` and stop its process; resolves once it exited. */
  async stopHost(record) {
    this.forget(record);
    await stopProcess(record.process);
    this.logger.info(`Manager: stopped child host with config: ${record.config}`);
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
        // One id per host process: clients tell a crash of the process they knew from another.
        id: crypto.randomUUID(),
        output: `${line}\n`,
        config,
        process: child,
        logfile: file,
        connections,
        port: status.config.port,
        // A host with a pool of workers reloads without downtime (reloadHost).
        pool: status.workers !== undefined && status.workers !== null,
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
    record.exit = describeExit(code, signal);
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
        this.onHostGone();
      }, this.disconnectTimeout);
    }
  }

  /** A new connection to `record`; a pending stop is cancelled. Returns its id. */
  connect(record) {
    if (record.stopTimer !== null) {
      clearTimeout(record.stopTimer);
      record.stopTimer = null;
      this.logger.info(`Manager: the host with config ${record.config} has had its stop timeout cancelled`);
    }
    const connection = `${Date.now()}-${crypto.randomUUID()}`;
    record.connections.push(connection);
    this.logger.info(`Manager: connection ${connection} opened to host with config ${record.config}`);
    return connection;
  }

  /**
   * `connection` to the running `record` closed; its last one schedules the
   * host's stop. Returns true when that happened.
   */
  disconnect(record, connection) {
    const index = record.connections.indexOf(connection);
    if (index === -1) return false;
    record.connections.splice(index, 1);
    if (record.connections.length > 0) return false;
    this.scheduleStop(record);
    return true;
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

  /** Stop `record` in `delay` ms (default disconnectTimeout) unless a client connects. */
  scheduleStop(record, delay = this.disconnectTimeout) {
    if (record.stopTimer !== null) clearTimeout(record.stopTimer);
    record.stopTimer = setTimeout(() => this.timedStop(record.config), delay);
  }

  timedStop(config) {
    this.withLock(config, async () => {
      const record = this.hosts.get(config);
      if (record === undefined || record.connections.length > 0) return;
      await this.stopHost(record);
    }).then(() => this.onHostGone());
  }

  /** Forget every host and stop every child process; resolves once all exited. */
  stopAll() {
    this.stopping = true;
    for (const config of Array.from(this.crashed.keys())) this.forgetCrashed(config);
    for (const record of this.hosts.values()) {
      if (record.stopTimer !== null) clearTimeout(record.stopTimer);
    }
    this.hosts.clear();
    const children = Array.from(this.children);
    if (children.length > 0) this.logger.info(`Manager: stopping ${children.length} host(s)...`);
    return Promise.all(children.map(stopProcess));
  }
}

module.exports = { HostRegistry };
