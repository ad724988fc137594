'use strict';

// Reading a host.config.js and turning it into the config a server runs with
// and reports in /status, exactly as js-host 0.11 does: the user's properties
// first, in their order, then the defaults they did not set; some properties
// never appear in /status; `functions` appears as a list of names.

const fs = require('node:fs');
const path = require('node:path');

class ConfigError extends Error {}

// Not part of /status (js-host 0.11 omits the same ones; extendHost is ours).
const UNSERIALIZED = new Set([
  'logger',
  'silent',
  'outputOnListen',
  'disconnectTimeout',
  'stopManagerIfNoConnections',
  'extendHost',
]);

/**
 * require() a config file; any failure becomes a one-line ConfigError naming
 * the file (and the line, for a syntax error).
 */
function loadConfigFile(file) {
  const configFile = path.resolve(file);
  if (!fs.existsSync(configFile)) {
    throw new ConfigError(`Config file not found: ${configFile}`);
  }
  let config;
  try {
    config = require(configFile);
  } catch (err) {
    throw new ConfigError(describeLoadError(configFile, err));
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new ConfigError(`Config file does not export an object: ${configFile}`);
  }
  if (Object.keys(config).length === 0) {
    throw new ConfigError(`Config file does not export an object (it exports {}; missing module.exports?): ${configFile}`);
  }
  return { configFile, config };
}

function firstLine(text) {
  return String(text).split('\n', 1)[0];
}

function describeLoadError(configFile, err) {
  if (!(err instanceof Error)) return `Error loading config file ${configFile}: ${String(err)}`;
  const message = firstLine(err.message);
  const stack = String(err.stack || '');
  if (err instanceof SyntaxError) {
    // V8 puts "<file>:<line>" on the first line of a SyntaxError from require().
    const where = /^(.*):(\d+)$/.exec(firstLine(stack));
    if (where) return `Syntax error in config file ${where[1]} line ${where[2]}: ${message}`;
    return `Syntax error in config file ${configFile}: ${message}`;
  }
  // Point at the config file's own line when the error started there.
  const frame = stack.split('\n').find((line) => line.includes(`${configFile}:`));
  const location = frame ? /:(\d+):\d+\)?$/.exec(frame.trim()) : null;
  const at = location ? ` line ${location[1]}` : '';
  const name = err.name && err.name !== 'Error' ? `${err.name}: ` : '';
  return `Error loading config file ${configFile}${at}: ${name}${message}`;
}

/** A copy of `config` with the missing `defaults` appended (key order kept). */
function withDefaults(config, defaults) {
  const merged = Object.assign({}, config);
  for (const key of Object.keys(defaults)) {
    if (merged[key] === undefined) merged[key] = defaults[key];
  }
  return merged;
}

/** The config as /status shows it. */
function serializableConfig(config, functionNames) {
  const result = {};
  for (const key of Object.keys(config)) {
    if (UNSERIALIZED.has(key)) continue;
    if (key === 'functions' && config.functions) {
      result.functions = functionNames || Object.keys(config.functions);
    } else {
      result[key] = config[key];
    }
  }
  return result;
}

module.exports = { ConfigError, loadConfigFile, withDefaults, serializableConfig };
