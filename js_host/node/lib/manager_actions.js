'use strict';

// The manager's /host/<action> endpoints (manager.js authenticates and routes
// them): start, stop, restart (a host with a pool of workers reloaded in
// place), status, connect and disconnect, each answered in js-host 0.11's
// shapes (plus a host record's id and pid, and how a crashed host ended) from
// the manager's HostRegistry. When the manager exits after an action is
// manager.js's to decide.

const { logTail, reloadHost, stopProcess } = require('./host_process');

/** A host's record as the manager's answers show it. */
function serializeHost(record) {
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

function startAction(manager, req, res, config) {
  // A start that arrives while the same host is starting gets that host
  // (200), not 'Host already running': both clients asked for the same thing.
  const registry = manager.registry;
  const joined = registry.starting.has(config);
  manager.cancelIdleExit();
  let failed = false;
  registry.withLock(config, async () => {
    const running = registry.hosts.get(config);
    if (running !== undefined) {
      if (joined) manager.sendJson(req, res, 200, serializeHost(running));
      else manager.send(req, res, 500, 'Host already running');
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
      registry.scheduleStop(record, manager.idleExitTimeout);
      manager.sendJson(req, res, 200, serializeHost(record));
    } catch (err) {
      failed = true;
      manager.logger.error(`Manager: error starting host: ${err.message}`);
      manager.send(req, res, 500, err.message);
    } finally {
      registry.starting.delete(config);
    }
  }).then(() => {
    // Back to a manager without hosts: wait for a start again (the user may fix the config).
    if (failed && !manager.registry.hasHosts()) manager.scheduleIdleExit();
  });
}

function stopAction(manager, req, res, config) {
  let stopped = false;
  manager.registry.withLock(config, async () => {
    const record = manager.registry.hosts.get(config);
    if (record === undefined) {
      manager.send(req, res, 500, `No known host with config: ${config}`);
      return;
    }
    const body = serializeHost(record);
    await manager.registry.stopHost(record);
    stopped = true;
    manager.sendJson(req, res, 200, body);
  }).then(() => {
    if (stopped) manager.exitAfterResponse(res);
  });
}

function restartAction(manager, req, res, config) {
  const registry = manager.registry;
  let failed = false;
  registry.withLock(config, async () => {
    const old = registry.hosts.get(config) || registry.crashed.get(config);
    if (old === undefined) {
      manager.send(req, res, 500, `No known host with config: ${config}`);
      return;
    }
    if (!old.crashed && old.pool) {
      await reloadPool(manager, req, res, old);
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
      manager.sendJson(req, res, 200, serializeHost(record));
    } catch (err) {
      failed = true;
      registry.forget(old);
      manager.logger.error(`Manager: error restarting host: ${err.message}`);
      manager.send(req, res, 500, err.message);
    }
  }).then(() => {
    if (failed) manager.exitAfterResponse(res);
  });
}

/**
 * Restart a host that runs a pool of workers by reloading it: same process,
 * new workers with the new code, no call lost. A config that fails to load
 * is a 500 with the reason; the host keeps serving the code it had.
 */
async function reloadPool(manager, req, res, record) {
  try {
    const line = await reloadHost(record.process);
    record.output = `${line}\n`;
    manager.logger.info(`Manager: reloaded host with config ${record.config}`);
    manager.sendJson(req, res, 200, serializeHost(record));
  } catch (err) {
    manager.logger.error(`Manager: error reloading host: ${err.message}`);
    manager.send(
      req,
      res,
      500,
      `Host with config ${record.config} failed to reload: ${err.message}. ` +
        `It keeps serving the code it had loaded.\n${logTail(record.logfile, '')}`,
    );
  }
}

function statusAction(manager, req, res, config) {
  const record = manager.registry.hosts.get(config);
  if (record !== undefined) {
    manager.sendJson(req, res, 200, { started: true, host: serializeHost(record) });
    return;
  }
  // A host that exited by itself and is still remembered: which process, and how it ended.
  const crashed = manager.registry.crashed.get(config);
  const body = { started: false };
  if (crashed !== undefined) body.crashed = { id: crashed.id, exit: crashed.exit, logfile: crashed.logfile };
  manager.sendJson(req, res, 200, body);
}

function connectAction(manager, req, res, config) {
  const record = manager.registry.hosts.get(config);
  if (record === undefined) {
    manager.send(req, res, 500, `No known host with config: ${config}`);
    return;
  }
  const connection = manager.registry.connect(record);
  manager.sendJson(req, res, 200, { ...serializeHost(record), connection });
}

function disconnectAction(manager, req, res, config, data) {
  const connection = data.connection;
  if (!connection) {
    manager.send(req, res, 500, 'No `connection` data provided');
    return;
  }
  const record = manager.registry.hosts.get(config);
  const body = { started: record !== undefined, config, stopTimeout: null };
  if (record === undefined) {
    body.status = 'Host has already stopped';
    const closed = manager.registry.closeCrashedConnection(config, connection);
    manager.sendJson(req, res, 200, body);
    if (closed) manager.exitAfterResponse(res);
    return;
  }
  manager.logger.info(`Manager: connection ${connection} closed to host with config ${config}`);
  if (manager.registry.disconnect(record, connection)) {
    manager.logger.info(
      `Manager: the host with config ${config} no longer has any connections. ` +
        `Stopping host in ${manager.disconnectTimeout}ms`,
    );
    body.stopTimeout = manager.disconnectTimeout;
    body.status = `Disconnected. Stopping host in ${manager.disconnectTimeout}ms`;
  } else {
    body.status = 'Disconnected';
  }
  manager.sendJson(req, res, 200, body);
}

// Each action: (manager, req, res, config, data), the body's config path checked already.
const HOST_ACTIONS = new Map([
  ['start', startAction],
  ['stop', stopAction],
  ['restart', restartAction],
  ['status', statusAction],
  ['connect', connectAction],
  ['disconnect', disconnectAction],
]);

module.exports = { HOST_ACTIONS };
