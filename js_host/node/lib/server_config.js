'use strict';

// What a server (server.js) takes from its config, checked: the body limit
// (requestDataLimit), the address and port, the protocol version /status
// announces, allowedHosts, and the logger the config asks for (logger, silent,
// logFormat). A bad value is a ConfigError that names it and says what is
// expected.

const { parseBytes } = require('./bytes');
const { ConfigError } = require('./config');
const { FORMATS, Logger, createSilent } = require('./logger');

// The js-host protocol this server speaks, announced as /status's "version": the 2015
// Python clients refuse a host whose version is not theirs (js-host 0.1.x wants 0.11,
// 0.2.0 wants 0.12; npm's 0.11 and 0.12 speak the same wire protocol). A config's
// `protocolVersion` announces the other one; "packageVersion" says which release runs.
const PROTOCOL_VERSION = '0.11.7';
const PROTOCOL_VERSION_PATTERN = /^0\.1[12]\.\d+$/;

/**
 * The settings of a server's config (with its defaults) once checked:
 * {bodyLimit: bytes, protocolVersion}. Throws a ConfigError for a bad value.
 */
function checkServerConfig(config) {
  const bodyLimit = parseBytes(config.requestDataLimit);
  if (bodyLimit === null) {
    throw new ConfigError(
      `requestDataLimit must be a size such as '10mb' or a number of bytes, not ${JSON.stringify(config.requestDataLimit)}`,
    );
  }
  if (typeof config.address !== 'string' || config.address === '') {
    throw new ConfigError(`address must be a string such as '127.0.0.1', not ${JSON.stringify(config.address)}`);
  }
  const portNumber = Number(config.port);
  if (!Number.isInteger(portNumber) || portNumber < 0 || portNumber > 65535 || String(config.port).trim() === '') {
    throw new ConfigError(`port must be a number from 0 to 65535, not ${JSON.stringify(config.port)}`);
  }
  const protocol = config.protocolVersion;
  if (protocol !== undefined && !(typeof protocol === 'string' && PROTOCOL_VERSION_PATTERN.test(protocol))) {
    throw new ConfigError(
      `protocolVersion must be a js-host version whose protocol this host speaks, '0.11.x' or '0.12.x', not ${JSON.stringify(protocol)}`,
    );
  }
  if (config.allowedHosts !== undefined && !Array.isArray(config.allowedHosts)) {
    throw new ConfigError('allowedHosts must be a list of host names');
  }
  return { bodyLimit, protocolVersion: protocol === undefined ? PROTOCOL_VERSION : protocol };
}

/** The logger a config asks for: its own `logger`, none (`silent`) or the console. */
function createLogger(config, options = {}) {
  const format = options.format !== undefined ? options.format : config.logFormat === undefined ? 'text' : config.logFormat;
  if (!FORMATS.has(format)) {
    throw new ConfigError(`logFormat must be 'text' (js-host 0.11's lines) or 'json' (one object a line), not ${JSON.stringify(format)}`);
  }
  const withFormat = { ...options, format };
  if (config.logger) return new Logger({ ...withFormat, custom: config.logger });
  if (config.silent) return createSilent(withFormat);
  return new Logger(withFormat);
}

module.exports = { checkServerConfig, createLogger, PROTOCOL_VERSION };
