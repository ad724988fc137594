// The host config of bench/client_async.py: the 50-byte echo of bench/client_echo.config.js,
// and `render`, a call that keeps the host busy for about 1 ms (a small component's render).
module.exports = {
  functions: {
    echo: function (data, cb) {
      cb(null, JSON.stringify(data));
    },
    render: function (data, cb) {
      var until = process.hrtime.bigint() + 1000000n; // 1 ms of synchronous work
      var spins = 0;
      while (process.hrtime.bigint() < until) spins++;
      cb(null, '<div class="card">' + String(data.title) + '</div>');
    },
  },
};
