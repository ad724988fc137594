'use strict';
// hypernova 2.5 serving the component of bench/pool.py: `node hypernova.js <port> <workers>`.
// One coordinator process and <workers> cluster workers sharing the port.
const hypernova = require('hypernova/server');
const {renderReact} = require('hypernova-react');
const App = require('./app');

const port = Number(process.argv[2]);
const workers = Number(process.argv[3] || 2);
const render = renderReact('App', App);

hypernova({
  devMode: false,
  getCPUs: () => workers,
  getComponent: (name) => (name === 'App' ? render : null),
  host: '127.0.0.1',
  port: port,
  logger: {level: 'warn'},
});
