// The upstream host of the shared-cache tests: each function answers with one
// header field a shared cache must heed (RFC 9111), set through `this.res` as any
// config function can. Every function counts its calls; `calls` reports the counts.
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

// name -> [header, value]: the function echoes its data with that field set.
var fields = {
  plain: null,
  cookie: ['Set-Cookie', 'session=for-one-client; HttpOnly'],
  private_: ['Cache-Control', 'private, max-age=3600'],
  privateField: ['Cache-Control', 'max-age=3600, private="Set-Cookie"'],
  noCache: ['Cache-Control', 'no-cache, max-age=3600'],
  noStore: ['Cache-Control', 'no-store'],
  mustUnderstand: ['Cache-Control', 'no-store, must-understand, max-age=3600'],
  varyCookie: ['Vary', 'Cookie'],
  varyStar: ['Vary', '*'],
  varyOther: ['Vary', 'Accept-Language'],
  sMaxageShort: ['Cache-Control', 'max-age=3600, s-maxage=1'],
  sMaxageLong: ['Cache-Control', 'max-age=1, s-maxage=3600'],
  maxAgeZero: ['Cache-Control', 'max-age=0'],
  maxAgeBad: ['Cache-Control', 'max-age=soon'],
  expiresPast: ['Expires', 'Thu, 01 Jan 1970 00:00:00 GMT'],
  expiresZero: ['Expires', '0'],
  expiresFuture: ['Expires', function() { return new Date(Date.now() + 3600 * 1000).toUTCString(); }],
  mustRevalidate: ['Cache-Control', 'max-age=1, must-revalidate'],
  public_: ['Cache-Control', 'public, max-age=1']
};

var functions = {};
Object.keys(fields).forEach(function(name) {
  functions[name] = counted(name, function(data, cb) {
    var field = fields[name];
    if (field) this.res.setHeader(field[0], typeof field[1] === 'function' ? field[1]() : field[1]);
    cb(null, JSON.stringify({echo: data}));
  });
});

// What the host saw of the caller: a function that would personalize its answer.
functions.whoami = counted('whoami', function(data, cb) {
  var headers = this.req.headers;
  cb(null, JSON.stringify({cookie: headers.cookie || null, authorization: headers.authorization || null}));
});

functions.calls = function(data, cb) {
  if (data && data.name) {
    return cb(null, JSON.stringify(callsByData[data.name + ' ' + JSON.stringify(data.data)] || 0));
  }
  cb(null, JSON.stringify(calls));
};

module.exports = {functions: functions, functionTimeout: 0};
