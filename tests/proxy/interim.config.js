// The upstream host of the 1xx tests: functions that send interim answers
// (103 Early Hints, 102 Processing, 100 Continue) before their output, the
// way any config function can through `this.res`. Every function counts its calls;
// `calls` reports the counts, like upstream.config.js.
'use strict';

var calls = {};
var callsByData = {};

function counted(name, fn) {
  return function(data, cb) {
    calls[name] = (calls[name] || 0) + 1;
    var key = name + ' ' + JSON.stringify(data);
    callsByData[key] = (callsByData[key] || 0) + 1;
    return fn.call(this, data, cb);
  };
}

// The output comes a moment after the interim answers, as from a function that
// sends its hints and then does its work.
function later(data, cb) {
  setTimeout(function() { cb(null, JSON.stringify({echo: data})); }, data.ms || 1);
}

module.exports = {
  functions: {
    echo: counted('echo', later),
    hints: counted('hints', function(data, cb) {
      this.res.writeEarlyHints({link: '</style.css>; rel=preload; as=style'});
      later(data, cb);
    }),
    processing: counted('processing', function(data, cb) {
      this.res.writeProcessing();
      later(data, cb);
    }),
    continued: counted('continued', function(data, cb) {
      this.res.writeContinue();
      later(data, cb);
    }),
    several: counted('several', function(data, cb) {
      var res = this.res;
      res.writeProcessing();
      res.writeEarlyHints({link: '</a.js>; rel=preload; as=script'});
      setTimeout(function() {
        res.writeEarlyHints({link: '</b.js>; rel=preload; as=script'});
        later(data, cb);
      }, 1);
    }),
    calls: function(data, cb) {
      if (data && data.name) {
        return cb(null, JSON.stringify(callsByData[data.name + ' ' + JSON.stringify(data.data)] || 0));
      }
      cb(null, JSON.stringify(calls));
    }
  },
  functionTimeout: 0
};
