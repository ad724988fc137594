'use strict';

// Prometheus metrics written by hand (the host has no npm dependency): counters,
// gauges and histograms with labels, and a registry that renders them in the text
// exposition format 0.0.4:
//   https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
// A series' label text is built (and escaped) once, when the series first appears; a
// caller on a hot path keeps the series get() returned and updates it directly. Gauges whose values live elsewhere (a pool's workers) are
// filled in by a collect function just before each rendering.

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value as the format wants it: backslash, double quote and line feed escaped. */
function escapeLabelValue(value) {
  return String(value).replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** HELP text: backslash and line feed escaped (a double quote stays as it is). */
function escapeHelp(text) {
  return String(text).replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** A sample value: integers as they are, +Inf, -Inf and NaN spelled as the format spells them. */
function formatValue(value) {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

class Metric {
  constructor(type, name, help, labelNames = []) {
    if (!METRIC_NAME.test(name)) throw new Error(`not a valid metric name: ${JSON.stringify(name)}`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__')) throw new Error(`not a valid label name: ${JSON.stringify(label)}`);
    }
    this.type = type;
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    // key -> {labels: '{a="x",b="y"}' (or ''), ...the type's state}
    this.series = new Map();
  }

  key(values) {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name} takes ${this.labelNames.length} label values (${this.labelNames.join(', ')}), not ${values.length}`);
    }
    // JSON for several values: no two lists of strings share a key, whatever they hold.
    return values.length === 1 ? String(values[0]) : JSON.stringify(values.map(String));
  }

  /** The series of these label values, made on first use. */
  get(values = []) {
    const key = this.key(values);
    let series = this.series.get(key);
    if (series === undefined) {
      series = this.newSeries(labelText(this.labelNames, values));
      this.series.set(key, series);
    }
    return series;
  }

  has(values = []) {
    return this.series.has(this.key(values));
  }

  /** Forget every series (a collect function sets the current ones again). */
  reset() {
    this.series.clear();
  }

  render() {
    let text = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const series of this.series.values()) text += this.renderSeries(series);
    return text;
  }
}

class Counter extends Metric {
  constructor(name, help, labelNames) {
    super('counter', name, help, labelNames);
  }

  newSeries(labels) {
    return { labels, value: 0 };
  }

  inc(values, by = 1) {
    this.get(values).value += by;
  }

  /** Set the total kept elsewhere (a count the pool keeps anyway); it must never go down. */
  set(values, total) {
    this.get(values).value = total;
  }

  renderSeries(series) {
    return `${this.name}${series.labels} ${formatValue(series.value)}\n`;
  }
}

class Gauge extends Metric {
  constructor(name, help, labelNames) {
    super('gauge', name, help, labelNames);
  }

  newSeries(labels) {
    return { labels, value: 0 };
  }

  set(values, value) {
    this.get(values).value = value;
  }

  renderSeries(series) {
    return `${this.name}${series.labels} ${formatValue(series.value)}\n`;
  }
}

class Histogram extends Metric {
  /** `buckets`: upper bounds, ascending (the +Inf bucket is added). */
  constructor(name, help, labelNames, buckets) {
    super('histogram', name, help, labelNames);
    if (labelNames.includes('le')) throw new Error('a histogram cannot have a label named "le"');
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) throw new Error(`histogram buckets must be ascending: ${buckets.join(', ')}`);
    }
    this.buckets = buckets;
    this.bucketLabels = buckets.map((bound) => `le="${formatValue(bound)}"`);
  }

  newSeries(labels) {
    // counts[i]: observations in (buckets[i-1], buckets[i]]; the last one: above every bound.
    return { labels, counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  observe(values, value) {
    this.observeIn(this.get(values), value);
  }

  /** observe() in a series get() returned. */
  observeIn(series, value) {
    const { buckets } = this;
    let i = 0;
    while (i < buckets.length && value > buckets[i]) i += 1;
    series.counts[i] += 1;
    series.sum += value;
    series.count += 1;
  }

  renderSeries(series) {
    // `le` goes last among the labels: {function="x",le="0.5"}.
    const open = series.labels === '' ? '{' : `${series.labels.slice(0, -1)},`;
    let text = '';
    let cumulative = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      cumulative += series.counts[i];
      text += `${this.name}_bucket${open}${this.bucketLabels[i]}} ${cumulative}\n`;
    }
    text += `${this.name}_bucket${open}le="+Inf"} ${series.count}\n`;
    text += `${this.name}_sum${series.labels} ${formatValue(series.sum)}\n`;
    text += `${this.name}_count${series.labels} ${series.count}\n`;
    return text;
  }
}

function labelText(names, values) {
  if (names.length === 0) return '';
  const pairs = names.map((name, i) => `${name}="${escapeLabelValue(values[i])}"`);
  return `{${pairs.join(',')}}`;
}

/** The metrics of one process, rendered in the order they were made. */
class Registry {
  constructor() {
    this.metrics = [];
    this.collectors = [];
  }

  add(metric) {
    if (this.metrics.some((m) => m.name === metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.metrics.push(metric);
    return metric;
  }

  counter(name, help, labelNames = []) {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name, help, labelNames = []) {
    return this.add(new Gauge(name, help, labelNames));
  }

  histogram(name, help, labelNames, buckets) {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  /** `collect()` runs before each rendering, to set the values kept elsewhere. */
  onCollect(collect) {
    this.collectors.push(collect);
  }

  render() {
    for (const collect of this.collectors) collect();
    let text = '';
    for (const metric of this.metrics) text += metric.render();
    return text;
  }
}

module.exports = { CONTENT_TYPE, Counter, Gauge, Histogram, Registry, escapeHelp, escapeLabelValue, formatValue };
