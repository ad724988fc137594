'use strict';

// The calls waiting for a free worker of a pool (pool.js), first in, first
// out. An array read from a moving head, so that taking the next call costs
// no copy; compacted now and then, so that a queue that never empties under
// load does not grow its array for ever. The bound (maxQueue) is the pool's.

// Calls taken from the queue before its array is compacted.
const COMPACT_QUEUE_AT = 1024;

class CallQueue {
  constructor() {
    this.calls = [];
    this.head = 0;
  }

  /** How many calls wait. */
  get length() {
    return this.calls.length - this.head;
  }

  push(call) {
    this.calls.push(call);
  }

  /** The call first in line, taken out of the queue; undefined when none waits. */
  shift() {
    if (this.head >= this.calls.length) return undefined;
    const call = this.calls[this.head];
    this.calls[this.head] = undefined;
    this.head += 1;
    if (this.head === this.calls.length) {
      this.calls.length = 0;
      this.head = 0;
    } else if (this.head >= COMPACT_QUEUE_AT) {
      // A queue that never empties under load must not grow an array for ever.
      this.calls = this.calls.slice(this.head);
      this.head = 0;
    }
    return call;
  }

  /** Put `call` first in line (a call that never reached the worker it was sent to). */
  unshift(call) {
    if (this.head > 0) {
      this.head -= 1;
      this.calls[this.head] = call;
    } else {
      this.calls.unshift(call);
    }
  }

  /** Every call waiting, in their order; the queue is empty afterwards. */
  takeAll() {
    const calls = this.calls.slice(this.head);
    this.calls.length = 0;
    this.head = 0;
    return calls;
  }
}

module.exports = { CallQueue };
