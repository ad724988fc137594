'use strict';
// The floor for bench/client_calls.py: a bare node:http server that echoes
// request bodies. GET /status answers like a js-host host with one function,
// `echo`, so that the Python client can call it too (its own overhead alone).
// Prints its port on stdout once listening.
const http = require('node:http');

const status = JSON.stringify({type: 'Host', version: 'floor', config: {functions: ['echo']}});

const server = http.createServer((req, res) => {
  if (req.method === 'GET') {
    res.setHeader('Content-Type', 'application/json');
    res.end(status);
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => res.end(Buffer.concat(chunks)));
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
