// The host config of bench/client_calls.py: one function that echoes its data
// as JSON (js-host 0.11 coerces outputs with toString(), so stringify here).
module.exports = {
  functions: {
    echo: function (data, cb) {
      cb(null, JSON.stringify(data));
    },
  },
};
