'use strict';

// What a pool (pool.js) says about its workers: a worker's own log lines in
// the master's log (with the worker's pid among a JSON line's fields), the
// fields of the master's lines about a worker and the call it runs, and why a
// worker ended, in the words of the log and of the 500 its call gets.

// A worker's causes of death, as counted in /status's restarts.
const CAUSES = {
  timeout: 'was stopped at the functionTimeout',
  uncaughtException: 'threw an uncaught exception',
  unhandledRejection: 'left a promise rejection unhandled',
  exit: 'exited',
  outOfMemory: 'ran out of memory',
  signal: 'was killed',
  disconnected: 'closed its channel to the host',
};

/** What a worker that ended for `cause` did, in words ("ran out of memory"). */
function causeText(cause) {
  return CAUSES[cause] || cause;
}

/** A worker's log line: `fields` those of a call's line (JSON logs), or undefined. */
function writeWorkerLine(logger, worker, level, message, fields) {
  const write = level === 'error' || level === 'warn' ? level : 'info';
  if (!logger.wantsFields) {
    logger[write](message);
    return;
  }
  const withWorker = fields !== null && typeof fields === 'object' ? fields : {};
  withWorker.worker = worker.pid;
  logger[write](message, withWorker);
}

/** The fields of the JSON log lines about `worker` (and its call, when it runs one). */
function fieldsOf(logger, worker, call = worker.call, status = undefined) {
  if (!logger.wantsFields) return undefined;
  if (call === null) return { worker: worker.pid };
  return { function: call.name, request_id: call.requestId === undefined ? null : call.requestId, status, worker: worker.pid };
}

/**
 * Why the call `worker` was running failed, for its 500: how the worker
 * ended, and where the details are (`maxWorkerMemory` in bytes, `logfile` or null).
 */
function describeDeath(worker, maxWorkerMemory, logfile) {
  let what = causeText(worker.cause);
  if (worker.cause === 'exit') what += ` with ${worker.detail} (process.exit() in a function?)`;
  else if (worker.cause === 'signal') what += ` by ${worker.detail}`;
  else if (worker.cause === 'outOfMemory') what += ` (its heap limit is maxWorkerMemory, ${maxWorkerMemory / 1048576}MB)`;
  if (worker.crashMessage) what += `: ${worker.crashMessage}`;
  const where = logfile ? `the host's logfile ${logfile}` : "the host's log";
  return `the worker running it ${what}. It was replaced; the details are in ${where}.`;
}

module.exports = { causeText, describeDeath, fieldsOf, writeWorkerLine };
