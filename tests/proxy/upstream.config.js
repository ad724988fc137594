// The upstream host of the proxy tests. Every function counts its calls;
// `calls` reports the counts (call it on the host directly: it is not counted).
'use strict';

var calls = {};
var callsByData = {};

// Cache-Control per function: our host sends it (upstream-0.11.config.js does it
// by hand for js-host 0.11, which has no such option).
var cacheControl = {counter: 'no-store', short: 'max-age=1', long: 'max-age=3600'};

function counted(name, fn) {
  return function(data, cb) {
    calls[name] = (calls[name] || 0) + 1;
    var key = name + ' ' + JSON.stringify(data);
    callsByData[key] = (callsByData[key] || 0) + 1;
    return fn.call(this, data, cb);
  };
}

function echo(data, cb) {
  cb(null, JSON.stringify({echo: data}));
}

module.exports = {
  functions: {
    echo: counted('echo', echo),
    counter: counted('counter', function(data, cb) { cb(null, String(calls.counter)); }),
    short: counted('short', echo),
    long: counted('long', echo),
    slow: counted('slow', function(data, cb) {
      setTimeout(function() { cb(null, JSON.stringify({slept: data.ms})); }, data.ms || 100);
    }),
    fail: counted('fail', function(data, cb) { cb(new Error('failed on purpose')); }),
    // {name, data}: how many calls of name with exactly data; {}: counts by function.
    calls: function(data, cb) {
      if (data && data.name) {
        return cb(null, JSON.stringify(callsByData[data.name + ' ' + JSON.stringify(data.data)] || 0));
      }
      cb(null, JSON.stringify(calls));
    }
  },
  cacheControl: cacheControl,
  functionTimeout: 0
};
