// The host config of bench/pool.py: the server-side render it measures, a 50-byte
// echo, and a render that keeps a worker busy for `ms` milliseconds.
const React = require('react');
const {renderToString} = require('react-dom/server');
const App = require('./app');

function render(props) {
  return renderToString(React.createElement(App, props));
}

module.exports = {
  functionTimeout: 10000,
  functions: {
    render: function (data, cb) {
      cb(null, render(data));
    },
    echo: function (data, cb) {
      cb(null, data);
    },
    // Synchronous, as a slow renderToString is: renders until `ms` have passed.
    slow_render: function (data, cb) {
      const until = Date.now() + data.ms;
      let html = '';
      while (Date.now() < until) {
        html = render(data.props);
      }
      cb(null, html);
    },
  },
};
