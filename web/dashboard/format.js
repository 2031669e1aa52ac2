// Numbers and times as the panels show them.

/** Three significant digits, no exponent for the figures a dashboard shows. */
export function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (Number.isInteger(v)) return v.toLocaleString('en');
  if (a >= 100) return Math.round(v).toLocaleString('en');
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a >= 0.01) return v.toFixed(3);
  return v.toPrecision(2);
}

/** Unix seconds as local HH:MM:SS. */
export function clock(seconds) {
  if (!seconds) return '–';
  return new Date(seconds * 1000).toLocaleTimeString('en-GB', { hour12: false });
}

/** Creates an element with a class and text (never HTML: names come from configs and key databases). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
