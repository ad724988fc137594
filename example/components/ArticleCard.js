'use strict';

// A React component rendered on the server by the js-host. No JSX build step:
// elements are made with React.createElement (aliased to `h`).
var React = require('react');

var h = React.createElement;

function Tag(props) {
  return h('li', {className: 'tag'}, props.name);
}

function ArticleCard(props) {
  var tags = props.tags || [];
  return h('article', {className: 'article-card', 'data-author': props.author},
    h('h2', null, props.title),
    h('p', {className: 'byline'}, 'by ', h('strong', null, props.author)),
    tags.length
      ? h('ul', {className: 'tags'}, tags.map(function(name) {
        return h(Tag, {key: name, name: name});
      }))
      : h('p', {className: 'no-tags'}, 'No tags'),
    h('p', {className: 'rendered-by'}, 'Rendered by React ' + React.version + ' in node ' + process.version)
  );
}

module.exports = ArticleCard;
