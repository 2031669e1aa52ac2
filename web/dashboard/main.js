// The dashboard of `clawbot serve` and `clawbot gateway` (GET /dashboard): polls GET /api/metrics/history?since=
// and GET /api/alerts every sampling interval and redraws. Bundled by esbuild (web/build.mjs) with uPlot and
// compiled into the binary: nothing is loaded from anywhere but the server that sent the page.
import 'uplot/dist/uPlot.min.css';
import './dashboard.css';

import { HttpError, NeedKey, getJson } from '../shared/api.js';
import { keyBox } from '../shared/key_box.js';
import { makeCharts } from './charts.js';
import { clock } from './format.js';
import { History } from './history.js';
import { alertsUnavailable, renderAlerts, renderKeys, renderUpstreams } from './panels.js';

const $ = (id) => document.getElementById(id);

const history = new History();
let charts = [];
let chartsRole = '';
let rangeS = 900;
let timer = 0;
let generation = 0;  // bumped on a new key: an answer to an older round is dropped

function setStatus(text, tone = '') {
  const status = $('status');
  status.textContent = text;
  status.className = tone;
}

function draw() {
  if (history.role !== chartsRole) {
    chartsRole = history.role;
    $('role').textContent = chartsRole;
    charts = makeCharts(chartsRole, $('charts'));
    const gateway = chartsRole === 'gateway';
    $('upstreams').hidden = !gateway;
    $('keys').hidden = !gateway;
  }
  for (const chart of charts) chart.update(history, rangeS);
  if (chartsRole === 'gateway') {
    renderUpstreams($('upstream-rows'), history);
    renderKeys($('key-rows'), history.keys);
  }
}

let askKey;

function askForKey(error) {
  document.body.dataset.state = 'need-key';
  askKey(error, 'This gateway needs an API key to show its metrics.');
  setStatus('waiting for an API key', 'error');
}

async function poll() {
  timer = 0;
  const round = generation;
  const since = history.since;
  const query = since === undefined ? '' : `?since=${encodeURIComponent(since)}`;
  try {
    const [answer, alerts] = await Promise.all([
      getJson(`/api/metrics/history${query}`),
      getJson('/api/alerts').catch((e) => e),
    ]);
    if (round !== generation) return;
    history.merge(answer);
    draw();
    if (alerts instanceof NeedKey) throw alerts;
    if (alerts instanceof Error) alertsUnavailable($('alert-list'), alerts.message);
    else renderAlerts($('alert-list'), alerts);
    document.body.dataset.state = 'ready';
    setStatus(`${history.t.length} samples, one every ${history.intervalS} s · updated ${clock(history.now)}`);
  } catch (e) {
    if (round !== generation) return;
    if (e instanceof NeedKey) {
      askForKey(e);
      return;  // no more polling until a key is given
    }
    const why = e instanceof HttpError ? e.message : `the server does not answer (${e.message})`;
    setStatus(`cannot read the metrics: ${why}; trying again`, 'error');
  }
  schedule();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(poll, Math.max(1, history.intervalS) * 1000);
}

function restart() {
  generation++;
  clearTimeout(timer);
  history.reset();
  poll();
}

function pickRange(button) {
  rangeS = Number(button.dataset.range);
  for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b === button));
  for (const chart of charts) chart.update(history, rangeS);
}

function start() {
  for (const button of document.querySelectorAll('[data-range]')) {
    button.addEventListener('click', () => pickRange(button));
  }
  askKey = keyBox(() => {
    setStatus('loading…');
    restart();
  });
  poll();
}

start();
