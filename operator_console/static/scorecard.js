// One merchant's scorecard over a period (GET /api/v1/merchants/{id}/record): acceptance,
// time from acceptance to arrival (median and 90th percentile), no-shows, the ratings and
// the recent orders; the merchant's open disputes of a rating or no-show, to uphold or
// overturn with a note. Reloads when a ticket event may have changed it.
import { api, el, lang, liveEvents, latestSeq, T, stateName, fmtDateTime, fmtDuration, notify } from './common.js';
import { barChart } from './charts.js';
import { periodPicker, periodQuery } from './period.js';
import { merchantSearch } from './merchant_search.js';

const $ = (id) => document.getElementById(id);
const merchantId = $('scorecard').dataset.merchantId;
const RATINGS = ['satisfied', 'basically_satisfied', 'not_satisfied'];
const fmtRate = (v) => (v === null || v === undefined ? '—' : `${v.toFixed(1)}%`);
const fmtSeconds = (v) => (v === null || v === undefined ? '—' : fmtDuration(v));
let categories = {};
// merchant kinds are an open list: a known one in the page's language, others as written
const kindName = (k) => (T(`kind_${k}`) === `kind_${k}` ? k : T(`kind_${k}`));

function orderRow(o) {
  const tr = el('tr'); tr.dataset.ticketId = o.ticket_id;
  const link = el('a', `#${o.ticket_id}`); link.href = `/tickets/${o.ticket_id}`;
  const td = el('td'); td.append(link);
  const state = el('td');
  state.append(el('span', o.state === 'no_show' ? T('no_show') : stateName(o.state), o.state === 'no_show' ? 'tag bad' : 'tag'));
  tr.append(td, el('td', categories[o.category] || o.category), el('td', fmtDateTime(o.placed_at)),
    el('td', o.arrived_at ? fmtDateTime(o.arrived_at) : '—'), state, ratingCell(o));
  return tr;
}

function ratingCell(o) {
  const td = el('td', o.rating ? stateName(o.rating) : '—');
  if (o.dispute) { td.append(' ', el('span', T(`dispute_${o.dispute}`), `tag dispute ${o.dispute}`)); }
  return td;
}

function disputeItem(d) {
  const li = el('li'); li.dataset.disputeId = d.id;
  const what = d.kind === 'rating' ? `${T('dispute_kind_rating')} ${stateName(d.rating)}` : T('dispute_kind_no_show');
  const link = el('a', `#${d.ticket_id}`); link.href = `/tickets/${d.ticket_id}`;
  li.append(link, ` ${what} · `, el('span', d.reason, 'reason'));
  const note = el('input'); note.maxLength = 300; note.placeholder = T('dispute_note'); note.setAttribute('aria-label', T('dispute_note'));
  li.append(' ', note);
  for (const [how, cls] of [['uphold', 'uphold'], ['overturn', 'overturn danger']]) {
    const b = el('button', T(how), cls); b.type = 'button';
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await api('POST', `/disputes/${d.id}/${how}`, { note: note.value }); await load(); }
      catch (err) { notify(err.message); b.disabled = false; }
    });
    li.append(' ', b);
  }
  return li;
}

async function loadDisputes(r) {
  $('sc-disputed').textContent = T('disputed_n', { n: r.disputed, m: r.overturned });
  const open = await api('GET', `/disputes?merchant_id=${merchantId}`);
  $('sc-disputes').replaceChildren(...open.map(disputeItem));
  if (!open.length) $('sc-disputes').append(el('li', T('no_disputes'), 'muted'));
}

async function load() {
  let r;
  try {
    r = await api('GET', `/merchants/${merchantId}/record?${periodQuery(picker.get())}`);
  } catch (err) {
    if (err.status === 404 || err.status === 422) { $('sc-title').textContent = T('merchant_missing'); $('scorecard').dataset.missing = '1'; return; }
    throw err;
  }
  document.title = `${r.name} · ${T('scorecard')}`;
  $('sc-title').textContent = `${T('scorecard')} · ${r.name}`;
  $('sc-sub').textContent = `${kindName(r.kind)} · ${r.grid_name}`;
  picker.showRange(r.first_day, r.last_day);
  $('sc-acceptance').textContent = fmtRate(r.acceptance_rate);
  $('sc-offers').textContent = T('offers_accepted', { n: r.offers, m: r.accepted });
  $('sc-arrive-median').textContent = fmtSeconds(r.time_to_arrive.median_s);
  $('sc-arrive-p90').textContent = fmtSeconds(r.time_to_arrive.p90_s);
  $('sc-visits').textContent = T('visits_n', { n: r.time_to_arrive.visits });
  $('sc-no-shows').textContent = r.no_shows;
  $('tile-no-shows').classList.toggle('alarm', r.no_shows > 0);
  const counts = RATINGS.map((k) => r.ratings[k] || 0);
  const rated = counts.reduce((a, b) => a + b, 0);
  barChart($('chart-ratings'), {
    title: `${T('ratings_dist')} · ${T('satisfied')} ${fmtRate(r.satisfied_rate)}`,
    xLabel: T('axis_rating'), yLabel: T('axis_count'),
    groups: RATINGS.map((k) => ({ key: k, label: stateName(k), cls: k })),
    series: [{ name: 'ratings', label: T('axis_count'), cls: 'rating', values: counts }],
    extra: [{ label: '%', values: counts.map((n) => (rated ? fmtRate((100 * n) / rated) : '—')) }],
    empty: T('no_orders_period'),
  });
  const body = $('sc-orders').querySelector('tbody');
  body.replaceChildren(...r.recent_orders.map(orderRow));
  if (!r.recent_orders.length) { const tr = el('tr'); const td = el('td', T('no_orders_period'), 'muted'); td.colSpan = 6; tr.append(td); body.append(tr); }
  await loadDisputes(r);
  $('scorecard').dataset.loads = String(Number($('scorecard').dataset.loads || 0) + 1);
}

const pending = new Set();
function soon(fn, ms = 0) { if (pending.has(fn)) return; pending.add(fn); setTimeout(() => { pending.delete(fn); fn().catch((e) => notify(e.message)); }, ms); }

const picker = periodPicker($('period'), () => { search.refresh(); soon(load); });
const search = merchantSearch($('sc-search'), $('sc-results'), (id) => `/wallboard/merchants/${id}?${periodQuery(picker.get())}`);
$('back-wallboard').href = `/wallboard?${periodQuery(picker.get())}`;
$('period').addEventListener('click', () => { $('back-wallboard').href = `/wallboard?${periodQuery(picker.get())}`; });

try {
  const catalog = await api('GET', '/catalog');
  categories = Object.fromEntries(catalog.map((c) => [c.code, lang() === 'zh-CN' ? c.name_zh : c.name_en]));
} catch (err) { notify(err.message); }
await load();
liveEvents((ev) => { if (ev.subject === 'ticket') soon(load, 1000); }, { since: await latestSeq(), onReconnect: () => soon(load) });
document.body.dataset.ready = '1';
