// The host behind the proxy benchmark (bench/proxy_cache.py).
'use strict';

var calls = {};

module.exports = {
  functions: {
    // A tiny answer, at once: what a cache hit is measured with.
    echo: function(data, cb) { cb(null, JSON.stringify({echo: data})); },
    // data.ms of work (a timer): the 20 ms function and the coalescing test.
    sleep: function(data, cb) {
      var key = JSON.stringify(data);
      calls[key] = (calls[key] || 0) + 1;
      setTimeout(function() { cb(null, JSON.stringify({slept: data.ms})); }, data.ms);
    },
    // How many times sleep ran with exactly this data.
    calls: function(data, cb) { cb(null, String(calls[JSON.stringify(data)] || 0)); }
  },
  functionTimeout: 0
};
