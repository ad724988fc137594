'use strict';

// Command-line arguments of js-host 0.11:
//   js-host <config> [-c|--config] [-j|--json] [-p|--port N] [-l|--logfile F]
//                    [-m|--manager] [-d|--detached] [-v|--version] [-h|--help]
// and ours: [--workers N|auto] (a pool of worker processes, see pool.js),
// [--log-format text|json] (the config's logFormat, see logger.js).
// Values: "-p 0", "-p0", "--port 0", "--port=0". Short flags combine ("-jm").

class UsageError extends Error {}

const FLAGS = { c: 'config', j: 'json', m: 'manager', d: 'detached', v: 'version', h: 'help' };
const VALUES = { p: 'port', l: 'logfile' };
const LONG_FLAGS = new Set(Object.values(FLAGS));
const LONG_VALUES = new Set([...Object.values(VALUES), 'workers', 'log-format']);

const USAGE = `Usage: js-host <file> [options]

Options:
  -p, --port      Run the host or manager at the specified port
  -c, --config    Read in the config file and output its generated config as JSON
  -j, --json      Once the process has started, output its generated config as JSON
  -m, --manager   Run a manager process
  -d, --detached  Run in a detached process
  -l, --logfile   Adds a logger file transport that writes to the specified file
  --workers       Run functions in a pool of N worker processes ("auto": one per CPU)
  --log-format    Log lines as "text" (the default) or "json" (one object a line)
  -h, --help      Show help
  -v, --version   Show version number

Examples:
  js-host host.config.js  Start a host using the specified config file
`;

function parseArgs(argv) {
  const options = {
    file: undefined,
    port: undefined,
    logfile: undefined,
    workers: undefined,
    logFormat: undefined,
    config: false,
    json: false,
    manager: false,
    detached: false,
    version: false,
    help: false,
  };
  const positional = [];

  const setValue = (name, value) => {
    if (value === undefined) throw new UsageError(`Missing value for --${name}`);
    if (name === 'port') {
      if (!/^\d+$/.test(value) || Number(value) > 65535) {
        throw new UsageError(`--port must be a number from 0 to 65535, not ${JSON.stringify(value)}`);
      }
      options.port = Number(value);
    } else if (name === 'workers') {
      if (value !== 'auto' && !/^\d+$/.test(value)) {
        throw new UsageError(`--workers must be a number of worker processes or "auto", not ${JSON.stringify(value)}`);
      }
      options.workers = value === 'auto' ? value : Number(value);
    } else if (name === 'log-format') {
      if (value !== 'text' && value !== 'json') {
        throw new UsageError(`--log-format must be "text" or "json", not ${JSON.stringify(value)}`);
      }
      options.logFormat = value;
    } else {
      if (options.logfile !== undefined) throw new UsageError('-l --logfile should only be specified once');
      options.logfile = value;
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (LONG_FLAGS.has(name) && eq === -1) {
        options[name] = true;
      } else if (LONG_VALUES.has(name)) {
        setValue(name, eq === -1 ? argv[++i] : arg.slice(eq + 1));
      } else {
        throw new UsageError(`Unknown argument: ${arg}`);
      }
    } else if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j];
        if (FLAGS[letter]) {
          options[FLAGS[letter]] = true;
        } else if (VALUES[letter]) {
          const rest = arg.slice(j + 1);
          setValue(VALUES[letter], rest !== '' ? rest.replace(/^=/, '') : argv[++i]);
          break;
        } else {
          throw new UsageError(`Unknown argument: -${letter}`);
        }
      }
    } else {
      positional.push(arg);
    }
  }

  if (options.help || options.version) return options;
  if (positional.length === 0) throw new UsageError('Not enough non-option arguments: got 0, need at least 1');
  if (positional.length > 1) throw new UsageError(`Unknown argument: ${positional[1]}`);
  options.file = positional[0];
  return options;
}

module.exports = { parseArgs, UsageError, USAGE };
