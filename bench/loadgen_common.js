// What the Node load generators (bench/loadgen.js, bench/sio_loadgen.js) share: the command
// line, JSON lines on stdout, lines on stdin, latency samples, opening connections a few at a
// time, and the run under a hard deadline.
'use strict';

const { performance } = require('node:perf_hooks');
const readline = require('node:readline');

// The options both generators take; `extraDefaults` adds or overrides defaults, `extraNames`
// adds options (flag -> [key, parser]). Only loopback URLs are accepted.
function parseArgs(argv, extraDefaults, extraNames) {
  const opts = {
    url: null,
    mode: 'echo',
    connections: 50,
    inflight: 16,
    size: 32,
    warmup: 2,
    duration: 8,
    maxMessages: 50_000_000,
    maxSamples: 2_000_000,
    warmConnections: 10,
    openConcurrency: 50,
    openTimeout: 10,
    ...extraDefaults,
  };
  const names = {
    '--url': ['url', String],
    '--mode': ['mode', String],
    '--connections': ['connections', Number],
    '--inflight': ['inflight', Number],
    '--size': ['size', Number],
    '--warmup': ['warmup', Number],
    '--duration': ['duration', Number],
    '--max-messages': ['maxMessages', Number],
    '--max-samples': ['maxSamples', Number],
    '--warm-connections': ['warmConnections', Number],
    '--open-concurrency': ['openConcurrency', Number],
    '--open-timeout': ['openTimeout', Number],
    ...extraNames,
  };
  for (let i = 0; i < argv.length; i++) {
    const spec = names[argv[i]];
    if (!spec || i + 1 >= argv.length) throw new Error(`bad argument: ${argv[i]}`);
    opts[spec[0]] = spec[1](argv[++i]);
  }
  if (!opts.url) throw new Error('--url is required');
  const host = new URL(opts.url).hostname;
  if (!(host.startsWith('127.') || host === 'localhost' || host === '[::1]')) {
    throw new Error(`loopback only, refusing ${host}`);
  }
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// The next line on stdin (trimmed), or null once stdin is closed.
let stdinLines = null;
function nextStdinLine() {
  if (!stdinLines) {
    const rl = readline.createInterface({ input: process.stdin });
    const waiting = [];
    const buffered = [];
    rl.on('line', (l) => (waiting.length ? waiting.shift()(l.trim()) : buffered.push(l.trim())));
    rl.on('close', () => { while (waiting.length) waiting.shift()(null); buffered.push(null); });
    stdinLines = () => new Promise((r) => (buffered.length ? r(buffered.shift()) : waiting.push(r)));
  }
  return stdinLines();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

// Latency samples in ms: at most `maxSamples` kept (reservoir sampling beyond), and the
// largest one ever recorded.
class Samples {
  constructor(maxSamples) {
    this.samples = new Float64Array(Math.max(1, maxSamples));
    this.n = 0;
    this.seen = 0;
    this.max = 0;
  }

  record(ms) {
    this.seen++;
    if (ms > this.max) this.max = ms;
    if (this.n < this.samples.length) {
      this.samples[this.n++] = ms;
    } else {
      const j = Math.floor(Math.random() * this.seen); // reservoir sampling
      if (j < this.samples.length) this.samples[j] = ms;
    }
  }

  stats() {
    const sorted = this.samples.subarray(0, this.n).sort();
    return {
      p50_ms: percentile(sorted, 50),
      p99_ms: percentile(sorted, 99),
      max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    };
  }
}

// Opens n connections with ids firstId.. through `openConn(id)` (a promise of the connection
// or null), at most `concurrency` at a time; the ones that opened.
async function openMany(n, firstId, concurrency, openConn) {
  const conns = [];
  let next = 0;
  async function worker() {
    while (next < n) {
      const id = firstId + next++;
      const c = await openConn(id);
      if (c) conns.push(c);
    }
  }
  const workers = [];
  for (let i = 0; i < Math.min(concurrency, n); i++) workers.push(worker());
  await Promise.all(workers);
  return conns;
}

// Runs `run` (a promise of the exit code) and exits with it, `exitDelayMs` later if given.
// After `hardDeadlineMs` it gives up: a result with an error and `counters()`, exit code 2.
function runWithDeadline(run, hardDeadlineMs, counters, exitDelayMs) {
  const deadline = setTimeout(() => {
    emit({ event: 'result', error: `hard deadline of ${hardDeadlineMs / 1000}s reached`, ...counters() });
    process.exit(2);
  }, hardDeadlineMs);

  run()
    .then((code) => {
      clearTimeout(deadline);
      if (exitDelayMs) setTimeout(() => process.exit(code), exitDelayMs);
      else process.exit(code);
    })
    .catch((err) => {
      emit({ event: 'result', error: String(err && err.stack ? err.stack : err) });
      process.exit(1);
    });
}

module.exports = {
  performance,
  parseArgs,
  emit,
  nextStdinLine,
  sleep,
  percentile,
  Samples,
  openMany,
  runWithDeadline,
};
