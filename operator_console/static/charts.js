// Inline SVG charts for the wallboard and the merchant scorecard: grouped bars, with an
// optional rate (0–100 %) drawn as a line or as points on a right-hand axis. No chart
// library and no build step.
//
// Accessible by construction: the <figure> has a visible caption; the SVG is role="img"
// and named by its own <title>; both axes are labelled; every bar and point carries a
// <title> (shown on hover); a visually hidden <table> holds the same numbers for screen
// readers. Charts are drawn at the width of their box (text stays the size of the page's
// text on a wall screen and on a laptop) and redrawn when the window is resized.
const NS = 'http://www.w3.org/2000/svg';
let uid = 0;
const drawn = new Set();

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function html(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function tip(node, text) { node.append(svg('title', {}, text)); return node; }

// A scale for counts: a maximum that is 1, 2 or 5 times a power of ten times a whole
// number of steps, and whole-number steps (at most `ticks` of them).
export function niceScale(value, ticks = 4) {
  const v = Math.max(1, value);
  const raw = v / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, Math.ceil([1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw)));
  return { max: step * Math.ceil(v / step), step };
}

// Roughly how wide a label is in pixels: CJK characters are a full em, others about half.
function textWidth(text, fs) {
  let w = 0;
  for (const ch of String(text)) w += ch.charCodeAt(0) > 0x2e7f ? fs : fs * 0.58;
  return w;
}

function fit(text, width, fs) {
  if (textWidth(text, fs) <= width) return text;
  let out = '';
  for (const ch of String(text)) { if (textWidth(out + ch + '…', fs) > width) break; out += ch; }
  return out ? out + '…' : '';
}

const fmtRate = (v) => (v === null || v === undefined ? '—' : `${Number(v).toFixed(1)}%`);

// Draw a bar chart into `figure` (a <figure> element). `spec`:
//   title, xLabel, yLabel            the caption and the axis names
//   groups: [{key, label, title?, cls?}]   one slot on the x axis each
//   series_x: true when the groups are a sequence (days): labels may be skipped, not cut
//   series: [{name, label, cls, values}]   one bar per group each (counts)
//   rate: {label, axisLabel, cls, values, connect}   optional, percentages or null
//   extra: [{label, values}]          more columns for the data table (already formatted)
//   empty: text shown over the plot when every value is zero
//   height: pixels (default 240)
export function barChart(figure, spec) {
  figure._chart = spec;
  drawn.add(figure);
  draw(figure);
}

function draw(figure) {
  const spec = figure._chart;
  const id = figure.dataset.chartId || (figure.dataset.chartId = `chart-${++uid}`);
  const fs = Math.round(parseFloat(getComputedStyle(document.documentElement).fontSize) * 0.8);
  const W = Math.max(300, Math.floor(figure.clientWidth || 600));
  const H = spec.height || Math.round(fs * 19);
  const rate = spec.rate || null;
  // a rate without a line (categories) is written under each label instead of over the bars
  const rateRow = rate && !rate.connect;
  const m = { top: fs * 2.4, right: rate ? fs * 4 : fs, bottom: fs * (rateRow ? 5.4 : 4.2), left: fs * 4.2 };
  const pw = W - m.left - m.right, ph = H - m.top - m.bottom;
  const n = Math.max(1, spec.groups.length);
  const all = spec.series.flatMap((s) => s.values);
  // a tenth of headroom keeps the tallest bar's value clear of the 100 % rate line
  const { max, step } = niceScale(Math.max(0, ...all) * (rate ? 1.1 : 1));
  const y = (v) => m.top + ph - (v / max) * ph;
  const r = (v) => m.top + ph - (v / 100) * ph;
  const slot = pw / n;
  const barW = Math.max(2, Math.min(fs * 3, (slot * 0.78) / spec.series.length));
  const x0 = (i) => m.left + i * slot + (slot - barW * spec.series.length) / 2;

  const root = svg('svg', {
    width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-t`,
    class: 'chart-svg', 'font-size': fs, focusable: 'false',
  });
  root.append(svg('title', { id: `${id}-t` }, spec.title));

  // grid lines and the count axis on the left
  const grid = svg('g', { class: 'axis y' });
  for (let v = 0; v <= max; v += step) {
    grid.append(svg('line', { x1: m.left, x2: m.left + pw, y1: y(v), y2: y(v), class: v ? 'gridline' : 'baseline' }));
    grid.append(svg('text', { x: m.left - fs * 0.4, y: y(v) + fs * 0.35, 'text-anchor': 'end' }, v));
  }
  grid.append(svg('text', { class: 'axis-label', transform: `translate(${fs * 1.1},${m.top + ph / 2}) rotate(-90)`, 'text-anchor': 'middle' }, spec.yLabel));
  root.append(grid);

  if (rate) {
    const ra = svg('g', { class: 'axis rate' });
    for (const v of [0, 50, 100]) ra.append(svg('text', { x: m.left + pw + fs * 0.4, y: r(v) + fs * 0.35 }, `${v}%`));
    ra.append(svg('text', { class: 'axis-label', transform: `translate(${W - fs * 0.9},${m.top + ph / 2}) rotate(90)`, 'text-anchor': 'middle' }, rate.axisLabel || rate.label));
    root.append(ra);
  }

  // x labels: a series (days) shows as many as fit, the others left to the bars' titles
  // and the table; categories each keep theirs, shortened with … when too long
  const widest = Math.max(...spec.groups.map((g) => textWidth(g.label, fs)), 1);
  const every = spec.series_x ? Math.max(1, Math.ceil(widest / (slot * 0.95))) : 1;
  const labels = svg('g', { class: 'axis x' });
  spec.groups.forEach((g, i) => {
    const wide = every > 1 ? textWidth(g.label, fs) <= slot * every : true;
    if (i % every !== 0 || !wide) return;
    const text = every > 1 ? g.label : fit(g.label, slot * 0.98, fs);
    // the full label on hover, in a group so the text element holds only the label
    const item = tip(svg('g', { class: 'tick' }), g.title || g.label);
    item.append(svg('text', { x: m.left + i * slot + slot / 2, y: m.top + ph + fs * 1.3, 'text-anchor': 'middle' }, text));
    labels.append(item);
  });
  labels.append(svg('text', { class: 'axis-label', x: m.left + pw / 2, y: H - fs * 0.5, 'text-anchor': 'middle' }, spec.xLabel));
  root.append(labels);

  // bars, each with its value on top when there is room
  const bars = svg('g', { class: 'bars' });
  spec.groups.forEach((g, i) => {
    spec.series.forEach((s, j) => {
      const v = s.values[i] || 0;
      const x = x0(i) + j * barW;
      const rect = svg('rect', {
        x: x + 1, y: y(v), width: Math.max(1, barW - 2), height: Math.max(0, m.top + ph - y(v)),
        class: `chart-bar ${s.cls} ${g.cls || ''}`.trim(), 'data-key': g.key, 'data-series': s.name, 'data-value': v,
      });
      bars.append(tip(rect, `${g.title || g.label} · ${s.label}: ${v}`));
      // the value inside the top of a tall bar, above a short one
      const inside = m.top + ph - y(v) >= fs * 1.5;
      if (v > 0 && barW >= fs * 1.2) bars.append(svg('text', { x: x + barW / 2, y: inside ? y(v) + fs * 1.05 : y(v) - fs * 0.3, 'text-anchor': 'middle', class: inside ? 'value inside' : 'value' }, v));
    });
  });
  root.append(bars);

  if (rate) {
    const g = svg('g', { class: `rate-series ${rate.cls}` });
    const cx = (i) => m.left + i * slot + slot / 2;
    if (rate.connect) {
      let d = '';
      rate.values.forEach((v, i) => {
        if (v === null || v === undefined) { d += ' '; return; }
        const prev = i > 0 ? rate.values[i - 1] : null;
        d += `${prev === null || prev === undefined ? 'M' : 'L'}${cx(i).toFixed(1)},${r(v).toFixed(1)} `;
      });
      if (d.trim()) g.append(svg('path', { d: d.trim(), class: 'rate-line', fill: 'none' }));
    }
    rate.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const gr = spec.groups[i];
      g.append(tip(svg('circle', { cx: cx(i), cy: r(v), r: fs * 0.32, class: 'point', 'data-key': gr.key, 'data-value': v }), `${gr.title || gr.label} · ${rate.label}: ${fmtRate(v)}`));
      if (rateRow) {
        if (slot >= textWidth(fmtRate(v), fs)) g.append(svg('text', { x: cx(i), y: m.top + ph + fs * 2.5, 'text-anchor': 'middle', class: 'rate-value' }, fmtRate(v)));
        return;
      }
      if (slot < fs * 3) return;
      // above the point, or below it when a bar's value label sits right there (and there
      // is room above the axis)
      const labelsY = spec.series.map((s) => {
        const top = y(s.values[i] || 0);
        return m.top + ph - top >= fs * 1.5 ? top + fs * 1.05 : top - fs * 0.3;
      });
      let ly = r(v) - fs * 0.6;
      const below = r(v) + fs * 1.4;
      if (labelsY.some((b) => Math.abs(b - ly) < fs * 1.1) && below < m.top + ph - fs * 0.2) ly = below;
      g.append(svg('text', { x: cx(i), y: ly, 'text-anchor': 'middle', class: 'rate-value' }, fmtRate(v)));
    });
    root.append(g);
  }

  // the legend, top left
  const legend = svg('g', { class: 'legend' });
  let lx = m.left;
  for (const s of spec.series) {
    legend.append(svg('rect', { x: lx, y: fs * 0.5, width: fs * 0.9, height: fs * 0.9, class: `swatch ${s.cls}` }));
    legend.append(svg('text', { x: lx + fs * 1.2, y: fs * 1.3 }, s.label));
    lx += fs * 2 + textWidth(s.label, fs);
  }
  if (rate) {
    legend.append(svg('line', { x1: lx, x2: lx + fs * 1.2, y1: fs * 0.95, y2: fs * 0.95, class: `swatch-line ${rate.cls}` }));
    legend.append(svg('circle', { cx: lx + fs * 0.6, cy: fs * 0.95, r: fs * 0.3, class: `point ${rate.cls}` }));
    legend.append(svg('text', { x: lx + fs * 1.6, y: fs * 1.3 }, rate.label));
  }
  root.append(legend);

  if (spec.empty && all.every((v) => !v)) {
    root.append(svg('text', { x: m.left + pw / 2, y: m.top + ph / 2, 'text-anchor': 'middle', class: 'empty' }, spec.empty));
  }

  // the same numbers as a table, for screen readers
  const table = html('table', null, 'visually-hidden');
  table.append(html('caption', spec.title));
  const head = html('tr');
  const cols = [spec.xLabel, ...spec.series.map((s) => s.label), ...(rate ? [rate.label] : []), ...(spec.extra || []).map((e) => e.label)];
  for (const c of cols) { const th = html('th', c); th.scope = 'col'; head.append(th); }
  const thead = html('thead'); thead.append(head);
  const tbody = html('tbody');
  spec.groups.forEach((g, i) => {
    const tr = html('tr');
    const th = html('th', g.title || g.label); th.scope = 'row'; tr.append(th);
    for (const s of spec.series) tr.append(html('td', s.values[i] || 0));
    if (rate) tr.append(html('td', fmtRate(rate.values[i])));
    for (const e of spec.extra || []) tr.append(html('td', e.values[i]));
    tbody.append(tr);
  });
  table.append(thead, tbody);

  const caption = html('figcaption', spec.title);
  caption.id = `${id}-c`;
  figure.setAttribute('aria-labelledby', caption.id);
  figure.replaceChildren(caption, root, table);
  figure.dataset.groups = String(spec.groups.length);
}

// Redraw every chart on the page at its box's current width and the page's text size.
export function redrawAll() {
  for (const f of drawn) if (f.isConnected) draw(f); else drawn.delete(f);
}

let resizeTimer = 0;
let lastWidth = window.innerWidth;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (window.innerWidth === lastWidth) return;
    lastWidth = window.innerWidth;
    redrawAll();
  }, 150);
});
// the A / A+ / A++ text size buttons change the page's font size, and so the charts' text
for (const b of document.querySelectorAll('.sizes button')) b.addEventListener('click', () => setTimeout(redrawAll, 0));
