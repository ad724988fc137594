'use strict';
// The component tree the pool benchmark renders (bench/pool.py): a product listing
// of `rows` rows, each a few nested components, rendered with React 18's
// renderToString by js-host and by hypernova alike.
const React = require('react');

const h = React.createElement;

function Price(props) {
  return h('span', {className: 'price'}, (props.cents / 100).toFixed(2), ' ', props.currency);
}

function Tags(props) {
  return h('ul', {className: 'tags'}, props.tags.map((tag) => h('li', {key: tag}, tag)));
}

function Row(props) {
  const item = props.item;
  return h('tr', {className: item.id % 2 ? 'odd' : 'even'},
    h('td', null, h('a', {href: '/item/' + item.id}, item.name)),
    h('td', null, h(Price, {cents: item.cents, currency: props.currency})),
    h('td', null, h(Tags, {tags: item.tags})),
    h('td', null, item.stock > 0 ? item.stock + ' in stock' : 'sold out'));
}

function App(props) {
  const items = [];
  for (let i = 0; i < props.rows; i++) {
    items.push({id: i, name: props.title + ' #' + i, cents: 100 + i * 7, stock: i % 5,
      tags: ['t' + (i % 3), 'u' + (i % 7), 'v' + (i % 11)]});
  }
  return h('main', null,
    h('h1', null, props.title),
    h('table', null, h('tbody', null,
      items.map((item) => h(Row, {key: item.id, item: item, currency: props.currency})))));
}

module.exports = App;
