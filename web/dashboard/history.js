// The page's copy of GET /api/metrics/history (src/monitor/history.h): the first answer whole, then each
// answer to ?since=<last sample> appended, every series kept as long as `t` (null where a sample lacks it),
// and samples older than the server's retention dropped.

export class History {
  constructor() {
    this.reset();
  }

  reset() {
    this.role = '';
    this.intervalS = 5;
    this.retentionS = 3600;
    this.now = 0;
    this.t = [];
    this.series = {};  // name -> [number | null], as long as t
    this.upstreams = {};  // name -> { state: [string | null], series: { name -> [...] } }
    this.keys = [];
    this.thresholds = {};
  }

  /** The `since` for the next request: the last sample's time (undefined before the first answer). */
  get since() {
    return this.t.length ? this.t[this.t.length - 1] : undefined;
  }

  /** Appends one answer. A server that restarted (its clock behind our last sample) starts the copy afresh. */
  merge(answer) {
    const t = Array.isArray(answer.t) ? answer.t : [];
    if (this.t.length && t.length && t[0] <= this.t[this.t.length - 1]) this.reset();
    this.role = answer.role || this.role;
    if (answer.interval_s > 0) this.intervalS = answer.interval_s;
    if (answer.retention_s > 0) this.retentionS = answer.retention_s;
    this.now = answer.now || (t.length ? t[t.length - 1] : this.now);
    if (Array.isArray(answer.keys)) this.keys = answer.keys;
    if (answer.thresholds && typeof answer.thresholds === 'object') this.thresholds = answer.thresholds;
    const before = this.t.length;
    this.t.push(...t);
    appendAll(this.series, answer.series || {}, before, t.length);
    const ups = answer.upstreams || {};
    for (const [name, up] of Object.entries(ups)) {
      const mine = (this.upstreams[name] ??= { state: new Array(before).fill(null), series: {} });
      append(mine, 'state', up.state, before, t.length);
      appendAll(mine.series, up.series || {}, before, t.length);
    }
    for (const [name, mine] of Object.entries(this.upstreams)) {
      if (!(name in ups)) {
        append(mine, 'state', undefined, before, t.length);
        appendAll(mine.series, {}, before, t.length);
      }
    }
    this.trim();
  }

  trim() {
    const oldest = this.now - this.retentionS;
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < oldest) drop++;
    if (drop === 0) return;
    this.t.splice(0, drop);
    for (const values of Object.values(this.series)) values.splice(0, drop);
    for (const up of Object.values(this.upstreams)) {
      up.state.splice(0, drop);
      for (const values of Object.values(up.series)) values.splice(0, drop);
    }
  }

  /** The last value of a series that is not null, or null. */
  latest(name, from = this.series) {
    const values = from[name];
    if (!values) return null;
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
    return null;
  }

  /** True when any sample has a value for any of `names`. */
  has(...names) {
    return names.some((name) => this.latest(name) !== null);
  }
}

// values[name] grows by `count` entries from `incoming` (or nulls), after padding to `before`.
function append(target, name, incoming, before, count) {
  const values = (target[name] ??= []);
  while (values.length < before) values.push(null);
  for (let i = 0; i < count; i++) {
    const v = Array.isArray(incoming) ? incoming[i] : undefined;
    values.push(v === undefined ? null : v);
  }
}

function appendAll(target, incoming, before, count) {
  for (const name of new Set([...Object.keys(target), ...Object.keys(incoming)])) {
    append(target, name, incoming[name], before, count);
  }
}
