'use strict';

// The version reported in /status ("type" tells clients what they talk to; the
// version only tells them which release).
module.exports = require('../package.json').version;
