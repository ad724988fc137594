// The host config of bench/client_calls.py: one function that echoes its data
// as JSON (js-host 0.11 coerces outputs with toString(), so stringify here).
// `held` answers the first call of each data at once and never answers a later one
// (a refresh still running: bench/compare.py's stale-while-revalidate row).
var answered = {};

module.exports = {
  functions: {
    echo: function (data, cb) {
      cb(null, JSON.stringify(data));
    },
    held: function (data, cb) {
      var key = JSON.stringify(data);
      if (answered[key]) return; // the host's functionTimeout ends it (504)
      answered[key] = true;
      cb(null, key);
    },
  },
};
