#!/usr/bin/env node
'use strict';

// js-host <config> [-c|--config] [-j|--json] [-p|--port N] [-l|--logfile F]
//                  [-m|--manager] [-d|--detached] [-v|--version] [-h|--help]
//                  [--workers N|auto] [--log-format text|json]
// Same outputs as js-host 0.11's CLI. Errors are one line on stderr, exit 1.
// With workers (the config's `workers`, --workers, or 1 for a host started by
// the manager), the host is a master that runs the functions in a pool of
// worker processes (pool_host.js); SIGHUP then reloads them without downtime.
// The command is lib/cli.js's (a server run: lib/serve.js; --detached: lib/detached.js).

require('../lib/cli').run(process.argv.slice(2));
