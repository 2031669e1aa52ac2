// The charts (uPlot), each from series of the history (src/monitor/series.h), in the unit it shows, with the
// alert thresholds of the history's "thresholds" drawn as dashed red lines.
import uPlot from 'uplot';

import { el, fmt } from './format.js';

const GiB = 1024 ** 3;
const COLOURS = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#0891b2'];
const LINE_COLOUR = '#dc2626';
const GPU_SERIES = ['gpu_utilization_ratio', 'gpu_memory_used_bytes', 'gpu_memory_total_bytes',
  'gpu_gtt_used_bytes', 'gpu_gtt_total_bytes'];

const value = (h, name, i, scale = 1) => {
  const v = h.series[name]?.[i];
  return v === null || v === undefined ? null : v * scale;
};
// A series of the history, multiplied into the chart's unit.
const plain = (name, label, scale = 1) => ({ label, get: (h, i) => value(h, name, i, scale) });
// A threshold of the history drawn at `scale` times its value.
const line = (name, scale, label) => ({ name, get: (h, i, t) => t * scale, label });

export const CHARTS = [
  {
    id: 'tokens', title: 'Tokens per second', unit: 'tok/s',
    series: [plain('output_tokens_per_s', 'output'), plain('prompt_tokens_per_s', 'prompt')],
  },
  {
    id: 'ttft', title: 'TTFT and inter-token latency', unit: 'ms', roles: ['serve'],
    series: [plain('ttft_p50_s', 'TTFT P50', 1000), plain('ttft_p99_s', 'TTFT P99', 1000),
      plain('itl_p50_s', 'inter-token P50', 1000), plain('itl_p99_s', 'inter-token P99', 1000)],
    line: line('ttft_p99_s', 1000, (t) => `${fmt(+(t * 1000).toPrecision(4))} ms line`),
  },
  {
    id: 'e2e', title: 'End-to-end latency', unit: 'ms',
    series: [plain('e2e_p50_s', 'P50', 1000), plain('e2e_p99_s', 'P99', 1000)],
    line: line('e2e_p99_s', 1000, (t) => `${fmt(+(t * 1000).toPrecision(4))} ms line`),
  },
  {
    id: 'requests', title: 'Requests running and waiting', unit: '', roles: ['serve'],
    series: [plain('requests_running', 'running'), plain('requests_waiting', 'waiting')],
  },
  {
    id: 'in-flight', title: 'Requests in flight and queued', unit: '', roles: ['gateway'],
    series: [plain('requests_in_flight', 'in flight'), plain('queue_length', 'queued')],
  },
  {
    id: 'rate', title: 'Requests and errors per second', unit: '/s',
    series: [plain('requests_per_s', 'requests'), plain('errors_per_s', 'errors (5xx)')],
  },
  {
    id: 'cache', title: 'KV cache use and prefix-cache hit rate', unit: '%', roles: ['serve'], max: 100,
    series: [plain('kv_cache_usage_ratio', 'KV cache used', 100), plain('prefix_cache_hit_ratio', 'prefix hits', 100)],
  },
  {
    id: 'memory', title: 'Memory', unit: 'GiB',
    series: [
      {
        label: 'system used',
        get: (h, i) => {
          const total = value(h, 'memory_total_bytes', i);
          const available = value(h, 'memory_available_bytes', i);
          return total === null || available === null ? null : (total - available) / GiB;
        },
      },
      plain('process_rss_bytes', 'process RSS', 1 / GiB),
    ],
    // The alert is on the share of memory used: its line is that share of each sample's total.
    line: {
      name: 'memory_used_ratio',
      get: (h, i, t) => {
        const total = value(h, 'memory_total_bytes', i);
        return total === null ? null : (t * total) / GiB;
      },
      label: (t) => `${fmt(+(t * 100).toPrecision(4))}% line`,
    },
  },
  {
    id: 'gpu', title: 'GPU utilisation', unit: '%', roles: ['serve'], gpu: true, max: 100,
    series: [plain('gpu_utilization_ratio', 'busy', 100)],
  },
  {
    id: 'gpu-memory', title: 'GPU and unified memory', unit: 'GiB', roles: ['serve'], gpu: true,
    series: [plain('gpu_memory_used_bytes', 'VRAM used', 1 / GiB), plain('gpu_memory_total_bytes', 'VRAM total', 1 / GiB),
      plain('gpu_gtt_used_bytes', 'GTT used', 1 / GiB), plain('gpu_gtt_total_bytes', 'GTT total', 1 / GiB)],
  },
];

// An axis label: short (10k, 2.5M), as the axis has little room.
function tick(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return fmt(v);
}

/** One panel: a title, the latest values, and a uPlot chart (or a sentence where there is nothing to draw). */
export class Chart {
  constructor(spec, parent) {
    this.spec = spec;
    this.panel = el('section', 'panel chart');
    this.panel.dataset.chart = spec.id;
    this.panel.append(el('h2', '', spec.title + (spec.unit ? ` (${spec.unit})` : '')));
    this.now = el('p', 'now');
    this.plotBox = el('div', 'plot');
    this.note = el('p', 'note');
    this.note.hidden = true;
    this.panel.append(this.now, this.plotBox, this.note);
    parent.append(this.panel);
    this.plot = null;
    this.lineLabel = '';
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.plotBox);
  }

  /** Redraws from `history` over the last `rangeS` seconds. */
  update(history, rangeS) {
    const { spec } = this;
    if (spec.gpu && !history.has(...GPU_SERIES)) {
      this.showNote('No GPU found on this node (no amdgpu device in sysfs, no NVIDIA driver): nothing to draw.');
      return;
    }
    this.note.hidden = true;
    this.plotBox.hidden = false;
    delete this.panel.dataset.empty;
    const n = history.t.length;
    const columns = spec.series.map((s) => {
      const values = new Array(n);
      for (let i = 0; i < n; i++) values[i] = s.get(history, i);
      return values;
    });
    const threshold = spec.line ? history.thresholds[spec.line.name] : undefined;
    const hasLine = typeof threshold === 'number' && Number.isFinite(threshold);
    if (hasLine) {
      const values = new Array(n);
      for (let i = 0; i < n; i++) values[i] = spec.line.get(history, i, threshold);
      columns.push(values);
    }
    const lineLabel = hasLine ? spec.line.label(threshold) : '';
    this.range = [history.now - rangeS, history.now];
    if (!this.plot || lineLabel !== this.lineLabel) this.build(lineLabel);
    this.plot.setData([history.t.slice(), ...columns]);

    // What the page shows now, and what a test can read without looking at pixels.
    let points = 0;
    let nonzero = 0;
    const parts = [];
    spec.series.forEach((s, k) => {
      let last = null;
      for (const v of columns[k]) {
        if (v === null) continue;
        points++;
        if (v !== 0) nonzero++;
        last = v;
      }
      parts.push(`${s.label} ${fmt(last)}`);
    });
    this.now.textContent = parts.join(' · ') + (hasLine ? ` · ${lineLabel}` : '');
    this.panel.dataset.points = String(points);
    this.panel.dataset.range = String(rangeS);
    this.panel.dataset.nonzero = String(nonzero);
    if (hasLine) this.panel.dataset.line = String(threshold);
    else delete this.panel.dataset.line;
    if (points === 0) this.now.textContent += ' (no samples yet)';
  }

  showNote(text) {
    this.note.textContent = text;
    this.note.hidden = false;
    this.plotBox.hidden = true;
    this.now.textContent = '';
    this.panel.dataset.points = '0';
    this.panel.dataset.nonzero = '0';
    this.panel.dataset.empty = 'no-gpu';
  }

  build(lineLabel) {
    this.plot?.destroy();
    this.lineLabel = lineLabel;
    const { spec } = this;
    const unit = spec.unit ? ` ${spec.unit}` : '';
    const series = [{}];
    spec.series.forEach((s, k) => series.push({
      label: s.label, stroke: COLOURS[k % COLOURS.length], width: 1.5, points: { show: false },
      value: (u, v) => (v === null || v === undefined ? '–' : fmt(v) + unit),
    }));
    if (lineLabel) {
      series.push({ label: lineLabel, stroke: LINE_COLOUR, width: 1.5, dash: [6, 4], points: { show: false },
        value: (u, v) => (v === null || v === undefined ? '–' : fmt(v) + unit) });
    }
    const max = spec.max;
    this.plot = new uPlot({
      width: this.width(),
      height: 180,
      series,
      legend: { live: false },  // the values of now are above the chart
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => this.range },
        y: { range: (u, lo, hi) => [0, max ?? (hi > 0 ? hi * 1.1 : 1)] },
      },
      axes: [
        { size: 32, stroke: '#555' },
        { size: 44, stroke: '#555', values: (u, ticks) => ticks.map(tick) },
      ],
    }, series.map(() => []), this.plotBox);
  }

  width() {
    return Math.max(200, Math.floor(this.plotBox.clientWidth || this.panel.clientWidth || 300));
  }

  resize() {
    if (this.plot && !this.plotBox.hidden) this.plot.setSize({ width: this.width(), height: 180 });
  }
}

/** The charts of a role ("serve" or "gateway"), in `parent`. */
export function makeCharts(role, parent) {
  parent.replaceChildren();
  return CHARTS.filter((spec) => !spec.roles || spec.roles.includes(role)).map((spec) => new Chart(spec, parent));
}
