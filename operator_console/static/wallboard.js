// The supervisor wallboard: the live summary redrawn on every event; the period figures
// (GET /api/v1/figures) as totals and charts by day, category and grid, redrawn when a
// ticket event changes them; a merchant search that opens a scorecard page.
import { api, el, lang, liveEvents, latestSeq, T, stateName, fmtDuration, notify, emergencyAlert } from './common.js';
import { barChart } from './charts.js';
import { periodPicker, periodQuery } from './period.js';
import { merchantSearch } from './merchant_search.js';

const $ = (id) => document.getElementById(id);
const pct = (x) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)}%`);
let summary = null, fetchedAt = 0;

async function refresh() {
  summary = await api('GET', '/wallboard');
  fetchedAt = Date.now();
  $('w-waiting').textContent = summary.waiting;
  $('w-emergencies').textContent = summary.emergencies_waiting ? `⚠ ${summary.emergencies_waiting}` : '';
  $('tile-waiting').classList.toggle('alarm', summary.emergencies_waiting > 0);
  const em = summary.emergencies || {};
  $('w-em-count').textContent = em.emergencies ?? 0;
  $('w-em-human').textContent = em.taken ? `${fmtDuration(em.time_to_human_median_s)} / ${fmtDuration(em.time_to_human_p90_s)}` : '—';
  $('w-em-15s').textContent = em.answered_15s_rate === null || em.answered_15s_rate === undefined ? '—' : `${em.answered_15s_rate.toFixed(1)}%`;
  $('w-em-overflow').textContent = `${T('emergency_overflows')} ${em.overflows ?? 0} · ${T('emergency_120')} ${em.connected_120 ?? 0}`;
  $('w-60').textContent = pct(summary.today.within_60s);
  $('w-180').textContent = pct(summary.today.within_180s);
  $('w-offered').textContent = T('share_of', { n: summary.today.offered });
  $('w-abandoned').textContent = `${summary.today.abandoned}`;
  $('tile-abandoned').classList.toggle('alarm', summary.today.abandoned > 0);
  $('w-open').textContent = summary.open_tickets;
  $('w-overdue').textContent = summary.overdue;
  $('tile-overdue').classList.toggle('alarm', summary.overdue > 0);
  $('w-human').textContent = `${summary.escalated} / ${summary.unassigned}`;
  // incidents: outages open now (many callers, one ticket), under the tickets needing a human
  $('w-incidents').textContent = `${T('inc_wall')} ${summary.incidents_open ?? 0}`;
  $('w-incidents').hidden = !summary.incidents_open;
  $('tile-human').classList.toggle('alarm', summary.needing_human.length > 0);
  $('w-operators').replaceChildren(...summary.operators.map((o) => {
    const li = el('li'); li.dataset.state = o.state;
    li.append(el('b', o.name), ' ', el('span', stateName(o.state), o.state === 'available' ? 'tag ok' : o.state === 'paused' ? 'tag live' : 'tag'), ' ', el('span', o.reason || '', 'muted'));
    // time in state: since the operator's last change, on the server's clock
    const since = el('span', null, 'in-state muted small'); since.dataset.since = o.since;
    li.append(' ', since);
    return li;
  }));
  if (!summary.operators.length) $('w-operators').append(el('li', '—', 'muted'));
  const max = Math.max(1, ...Object.values(summary.tickets_by_state));
  if (!Object.keys(summary.tickets_by_state).length) { $('w-states').replaceChildren(el('li', '—', 'muted')); } else $('w-states').replaceChildren(...Object.entries(summary.tickets_by_state).map(([s, n]) => {
    const li = el('li'); li.dataset.state = s;
    const bar = el('div', null, 'bar'); bar.style.width = `${(100 * n) / max}%`;
    li.append(el('span', stateName(s)), bar, el('b', n));
    return li;
  }));
  $('w-needing').replaceChildren(...summary.needing_human.map((t) => {
    const li = el('li'); const a = el('a', `#${t.id}`); a.href = `/tickets/${t.id}`;
    li.append(a, ' ', el('span', lang() === 'zh-CN' ? t.category_zh : t.category_en), ' ', el('span', stateName(t.state), 'tag bad'), ' ', el('span', t.reason || '', 'muted'));
    return li;
  }));
  if (!summary.needing_human.length) $('w-needing').append(el('li', '—', 'muted'));
  tick();
}

function tick() {
  if (!summary) return;
  const longest = summary.waiting ? summary.longest_wait_s + (Date.now() - fetchedAt) / 1000 : 0;
  $('w-longest').textContent = summary.waiting ? fmtDuration(longest) : '—';
  $('tile-longest').classList.toggle('alarm', longest > 60);
  const serverNow = Date.parse(summary.at) + (Date.now() - fetchedAt);
  for (const tag of document.querySelectorAll('#w-operators .in-state')) {
    tag.textContent = T('time_in_state', { t: fmtDuration((serverNow - Date.parse(tag.dataset.since)) / 1000) });
  }
}

// -- period figures: totals and charts from GET /api/v1/figures ------------------------
const fmtRate = (v) => (v === null || v === undefined ? '—' : `${v.toFixed(1)}%`);
const fmtSeconds = (v) => (v === null || v === undefined ? '—' : fmtDuration(v));
const groupLabel = (g) => (lang() === 'zh-CN' ? g.label_zh : g.label_en) || g.key;
// ticket events that change a figure of the period
const FIGURE_EVENTS = new Set(['ticket.created', 'ticket.accepted', 'ticket.arrived', 'ticket.completed', 'ticket.rated', 'ticket.closed', 'ticket.cancelled', 'ticket.escalated', 'ticket.no_show', 'call.offered', 'call.connected', 'call.abandoned']);

function kpis(f) {
  const t = f.total, c = f.calls;
  const dl = el('dl', null, 'kpi-list');
  for (const [key, value] of [
    ['received', t.received], ['closed', t.closed], ['closure_rate', fmtRate(t.closure_rate)],
    ['solved', fmtRate(t.solved_rate)], ['rated', fmtRate(t.rated_rate)], ['satisfied', fmtRate(t.satisfied_rate)],
    ['deadlines_met_rate', fmtRate(t.deadlines_met_rate)], ['time_to_arrive', fmtSeconds(t.time_to_arrive_s)],
    ['calls_offered', c.offered], ['answered_60', fmtRate(c.answered_60s_rate)],
  ]) {
    const item = el('div', null, 'kpi'); item.dataset.key = key;
    item.append(el('dt', T(key)), el('dd', value));
    dl.append(item);
  }
  return dl;
}

function groupChart(figure, f, title, axis) {
  const groups = f.groups;
  barChart(figure, {
    title, xLabel: axis, yLabel: T('axis_tickets'),
    groups: groups.map((g) => ({ key: g.key, label: groupLabel(g) })),
    series: [
      { name: 'received', label: T('received'), cls: 'received', values: groups.map((g) => g.received) },
      { name: 'closed', label: T('closed'), cls: 'closed', values: groups.map((g) => g.closed) },
    ],
    rate: { label: T('satisfied'), axisLabel: T('axis_rate'), cls: 'satisfied', values: groups.map((g) => g.satisfied_rate), connect: false },
    extra: [
      { label: T('closure_rate'), values: groups.map((g) => fmtRate(g.closure_rate)) },
      { label: T('solved'), values: groups.map((g) => fmtRate(g.solved_rate)) },
      { label: T('rated'), values: groups.map((g) => fmtRate(g.rated_rate)) },
    ],
    empty: T('no_tickets'),
  });
}

let figuresSeq = 0;
async function loadFigures() {
  const box = $('figures'), q = periodQuery(picker.get()), mine = ++figuresSeq;
  let day, category, grid;
  try {
    [day, category, grid] = await Promise.all(['day', 'category', 'grid'].map((by) => api('GET', `/figures?${q}&by=${by}`)));
  } catch (err) {
    box.replaceChildren(el('p', err.missing ? T('figures_na') : err.message, 'notice'));
    box.dataset.available = 'no';
    return;
  }
  if (mine !== figuresSeq) return; // a newer period was chosen meanwhile
  box.dataset.available = 'yes';
  box.dataset.period = q;
  box.classList.remove('muted');
  box.replaceChildren(kpis(day));
  picker.showRange(day.first_day, day.last_day);
  barChart($('chart-day'), {
    title: T('chart_by_day'), xLabel: T('axis_day'), yLabel: T('axis_tickets'), series_x: true,
    groups: day.groups.map((g) => ({ key: g.key, label: g.key.slice(5), title: g.key })),
    series: [
      { name: 'received', label: T('received'), cls: 'received', values: day.groups.map((g) => g.received) },
      { name: 'closed', label: T('closed'), cls: 'closed', values: day.groups.map((g) => g.closed) },
    ],
    rate: { label: T('satisfied'), axisLabel: T('axis_rate'), cls: 'satisfied', values: day.groups.map((g) => g.satisfied_rate), connect: true },
    extra: [{ label: T('closure_rate'), values: day.groups.map((g) => fmtRate(g.closure_rate)) }],
    empty: T('no_tickets'),
  });
  groupChart($('chart-category'), category, T('chart_by_category'), T('axis_category'));
  groupChart($('chart-grid'), grid, T('chart_by_grid'), T('axis_grid'));
  box.dataset.loads = String(Number(box.dataset.loads || 0) + 1);
}

const pending = new Set();
function soon(fn, ms = 200) { if (pending.has(fn)) return; pending.add(fn); setTimeout(() => { pending.delete(fn); fn().catch((e) => notify(e.message)); }, ms); }

const picker = periodPicker($('period'), () => { search.refresh(); soon(loadFigures, 0); });
const search = merchantSearch($('sc-search'), $('sc-results'), (id) => `/wallboard/merchants/${id}?${periodQuery(picker.get())}`);

await refresh();
await loadFigures();
setInterval(tick, 1000);
setInterval(() => soon(refresh), 15000);
liveEvents((ev) => {
  if (ev.name === 'alert.emergency') emergencyAlert(ev);
  if (['call', 'ticket', 'operator', 'incident'].includes(ev.subject)) soon(refresh);
  if (FIGURE_EVENTS.has(ev.name)) soon(loadFigures, 1000);
}, { since: await latestSeq(), onReconnect: () => { soon(refresh); soon(loadFigures); } });
document.body.dataset.ready = '1';
