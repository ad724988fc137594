'use strict';

// The functions the example app calls from its Flask views.
//
// Start a host with it:   node ../js_host/node/bin/js-host.js host.config.js
// The address and port can come from the environment, so one file serves in
// development (127.0.0.1:9009), in the run script and in a container (0.0.0.0).

var React = require('react');
var ReactDOMServer = require('react-dom/server');
var MarkdownIt = require('markdown-it');
var ArticleCard = require('./components/ArticleCard');

// `html: false`: raw HTML in the source is escaped, so user text cannot inject markup.
var markdown = new MarkdownIt({html: false, linkify: true, typographer: true});

var calls = 0;

module.exports = {
  address: process.env.JS_HOST_ADDRESS || '127.0.0.1',
  port: Number(process.env.JS_HOST_PORT) || 9009,

  functions: {
    // Server-side rendering: {title, author, tags} -> HTML of <ArticleCard>.
    render_component: function(data, cb) {
      try {
        cb(null, ReactDOMServer.renderToString(React.createElement(ArticleCard, data)));
      } catch (err) {
        cb(err);
      }
    },

    // {text} -> HTML.
    render_markdown: function(data, cb) {
      if (typeof data.text !== 'string') {
        return cb(new Error('render_markdown needs a "text" string, got ' + JSON.stringify(data.text)));
      }
      cb(null, markdown.render(data.text) || '<p></p>');
    },

    // Changes on every call, so it must never be cached: the proxy sees the
    // `no-store` below and forwards every call (X-Cache: BYPASS).
    counter: function(data, cb) {
      calls += 1;
      cb(null, {calls: calls, pid: process.pid});
    }
  },

  // Cache-Control per function, sent on 200 responses for the caching proxy.
  cacheControl: {
    render_component: 'max-age=3600',
    render_markdown: 'max-age=3600',
    counter: 'no-store'
  }
};
