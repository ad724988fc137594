'use strict';

// The version reported in /status ("type" tells clients what they talk to; the
// version only tells them which release). It is defined once, as `__version__`
// in the Python package's js_host/__init__.py, which always ships beside this
// file (the wheel and the npm package both carry it).

const fs = require('node:fs');
const path = require('node:path');

const source = fs.readFileSync(path.join(__dirname, '..', '..', '__init__.py'), 'utf8');
const match = /^__version__ = "([^"]+)"$/m.exec(source);
if (match === null) throw new Error('js-host: no __version__ in js_host/__init__.py');

module.exports = match[1];
