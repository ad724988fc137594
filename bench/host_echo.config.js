// The host config of bench/host_throughput.py: one function that echoes its data.
module.exports = {
  functions: {
    echo: function (data, cb) {
      cb(null, data);
    },
  },
};
