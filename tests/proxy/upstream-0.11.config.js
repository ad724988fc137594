// upstream.config.js for js-host 0.11, which has no `cacheControl` option: the
// functions named there set the header on the response themselves.
'use strict';

var config = require('./upstream.config.js');

Object.keys(config.cacheControl).forEach(function(name) {
  var fn = config.functions[name];
  config.functions[name] = function(data, cb) {
    this.res.setHeader('Cache-Control', config.cacheControl[name]);
    return fn.call(this, data, cb);
  };
});

module.exports = config;
