// The lists beside the charts: alerts (GET /api/alerts), the gateway's upstreams and its keys' usage.
import { clock, el, fmt } from './format.js';

const ALERT_ORDER = { firing: 0, pending: 1, resolved: 2 };

/** The alert list: firing red, pending amber, resolved grey; the newest first within each. */
export function renderAlerts(list, answer) {
  list.replaceChildren();
  const alerts = Array.isArray(answer?.alerts) ? [...answer.alerts] : [];
  alerts.sort((a, b) => (ALERT_ORDER[a.state] ?? 3) - (ALERT_ORDER[b.state] ?? 3) ||
    (b.resolved_at ?? b.fired_at ?? b.since ?? 0) - (a.resolved_at ?? a.fired_at ?? a.since ?? 0));
  if (alerts.length === 0) {
    const rules = Array.isArray(answer?.rules) ? answer.rules.length : 0;
    list.append(el('li', 'none', rules ? `No alerts (${rules} rules watched).` : 'No alerts.'));
    return;
  }
  for (const a of alerts) {
    const state = ['firing', 'pending', 'resolved'].includes(a.state) ? a.state : 'pending';
    const item = el('li', `alert ${state}`);
    item.dataset.name = String(a.name ?? '');
    item.dataset.state = state;
    if (a.upstream) item.dataset.upstream = String(a.upstream);
    item.append(el('span', 'badge', state));
    item.append(el('strong', '', `${a.name}${a.upstream ? ` (${a.upstream})` : ''}`));
    if (a.severity) item.append(el('span', 'severity', a.severity));
    item.append(el('span', 'summary', a.summary || `${a.series} ${a.op} ${fmt(a.threshold)}`));
    const when = state === 'resolved' ? `resolved ${clock(a.resolved_at)}`
      : state === 'firing' ? `firing since ${clock(a.fired_at ?? a.since)}`
        : `pending since ${clock(a.since)}, fires after ${fmt(a.for_s)} s`;
    item.append(el('span', 'when', when));
    list.append(item);
  }
}

/** An alert list that cannot be read (a server without one, say). */
export function alertsUnavailable(list, why) {
  list.replaceChildren(el('li', 'none', `Alert list not available: ${why}`));
}

// A table's one row saying why it has no other.
function emptyRow(tbody, text, columns) {
  const cell = el('td', 'none', text);
  cell.colSpan = columns;
  tbody.append(el('tr'));
  tbody.lastChild.append(cell);
}

const UPSTREAM_STATES = {
  healthy: ['good', 'healthy'],
  open: ['bad', 'circuit open'],
  down: ['bad', 'down'],
  standby: ['idle', 'standby'],
};

/** One row per upstream: its latest state and figures. */
export function renderUpstreams(tbody, history) {
  tbody.replaceChildren();
  const names = Object.keys(history.upstreams).sort();
  if (names.length === 0) {
    emptyRow(tbody, 'No upstreams reported yet.', 6);
    return;
  }
  for (const name of names) {
    const up = history.upstreams[name];
    const state = up.state.length ? up.state[up.state.length - 1] : null;
    const [tone, label] = UPSTREAM_STATES[state] ?? ['idle', state ?? 'unknown'];
    const row = el('tr', `upstream ${tone}`);
    row.dataset.upstream = name;
    row.dataset.state = state ?? 'unknown';
    const latest = (series) => history.latest(series, up.series);
    const p99 = latest('e2e_p99_s');
    row.append(el('td', 'name', name));
    const stateCell = el('td');
    stateCell.append(el('span', `badge ${tone}`, label));
    row.append(stateCell);
    row.append(el('td', 'num', fmt(latest('requests_per_s'))));
    row.append(el('td', 'num', fmt(latest('errors_per_s'))));
    row.append(el('td', 'num', p99 === null ? '–' : `${fmt(p99 * 1000)} ms`));
    row.append(el('td', 'num', fmt(latest('in_flight'))));
    tbody.append(row);
  }
}

/** The gateway's keys: requests and tokens each has used. */
export function renderKeys(tbody, keys) {
  tbody.replaceChildren();
  if (!keys.length) {
    emptyRow(tbody, 'No key has been used (or the gateway runs without keys).', 5);
    return;
  }
  for (const k of keys) {
    const row = el('tr');
    row.dataset.key = String(k.id ?? '');
    row.append(el('td', 'mono', String(k.id ?? '')));
    row.append(el('td', '', String(k.name ?? '')));
    row.append(el('td', 'num', fmt(k.requests)));
    row.append(el('td', 'num', fmt(k.prompt_tokens)));
    row.append(el('td', 'num', fmt(k.completion_tokens)));
    tbody.append(row);
  }
}
