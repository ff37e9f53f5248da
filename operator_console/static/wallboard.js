// The supervisor wallboard: the live summary redrawn on every event, the period figures
// and a merchant scorecard from GET /api/v1/figures when that API exists.
import { api, el, liveEvents, latestSeq, T, stateName, fmtDuration, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const pct = (x) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)}%`);
let summary = null, fetchedAt = 0;

async function refresh() {
  summary = await api('GET', '/wallboard');
  fetchedAt = Date.now();
  $('w-waiting').textContent = summary.waiting;
  $('w-emergencies').textContent = summary.emergencies_waiting ? `⚠ ${summary.emergencies_waiting}` : '';
  $('tile-waiting').classList.toggle('alarm', summary.emergencies_waiting > 0);
  $('w-60').textContent = pct(summary.today.within_60s);
  $('w-180').textContent = pct(summary.today.within_180s);
  $('w-offered').textContent = T('share_of', { n: summary.today.offered });
  $('w-abandoned').textContent = `${summary.today.abandoned}`;
  $('tile-abandoned').classList.toggle('alarm', summary.today.abandoned > 0);
  $('w-open').textContent = summary.open_tickets;
  $('w-overdue').textContent = summary.overdue;
  $('tile-overdue').classList.toggle('alarm', summary.overdue > 0);
  $('w-human').textContent = `${summary.escalated} / ${summary.unassigned}`;
  $('tile-human').classList.toggle('alarm', summary.needing_human.length > 0);
  $('w-operators').replaceChildren(...summary.operators.map((o) => {
    const li = el('li'); li.dataset.state = o.state;
    li.append(el('b', o.name), ' ', el('span', stateName(o.state), o.state === 'available' ? 'tag ok' : o.state === 'paused' ? 'tag live' : 'tag'), ' ', el('span', o.reason || '', 'muted'));
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
    li.append(a, ' ', el('span', t.category), ' ', el('span', stateName(t.state), 'tag bad'), ' ', el('span', t.reason || '', 'muted'));
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
}

// -- figures (another module's API): shown as it comes, never invented -------------------
function table(rows) {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const t = el('table', null, 'data');
  const head = el('tr'); for (const c of cols) head.append(el('th', T(c)));
  t.append(head);
  for (const r of rows) {
    const tr = el('tr');
    for (const c of cols) { const v = r[c]; tr.append(el('td', typeof v === 'number' && v <= 1 && /rate|share/.test(c) ? pct(v) : typeof v === 'object' && v !== null ? JSON.stringify(v) : v)); }
    t.append(tr);
  }
  return t;
}

function render(value) {
  if (Array.isArray(value)) return value.length && typeof value[0] === 'object' ? table(value) : el('span', value.join(', '));
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length && keys.every((k) => value[k] && typeof value[k] === 'object' && !Array.isArray(value[k]))) {
      return table(keys.map((k) => ({ key: k, ...value[k] })));
    }
    const box = el('div');
    const dl = el('dl');
    for (const [k, v] of Object.entries(value)) {
      if (v && typeof v === 'object') { const sec = el('div'); sec.append(el('h3', T(k)), render(v)); box.append(sec); }
      else dl.append(el('dt', T(k)), el('dd', typeof v === 'number' && v <= 1 && /rate|share/.test(k) ? pct(v) : v));
    }
    box.prepend(dl);
    return box;
  }
  return el('span', value);
}

let figures = null;
async function loadFigures() {
  const box = $('figures');
  try {
    figures = await api('GET', '/figures');
  } catch (err) {
    box.replaceChildren(el('p', err.missing ? T('figures_na') : err.message, 'notice'));
    box.dataset.available = 'no';
    $('scorecard').replaceChildren(el('p', T('figures_na'), 'notice'));
    $('sc-merchant').hidden = true;
    return;
  }
  box.dataset.available = 'yes';
  box.classList.remove('muted');
  box.replaceChildren(render(figures));
  const merchants = figures.by_merchant || figures.merchants || [];
  const list = Array.isArray(merchants) ? merchants : Object.entries(merchants).map(([k, v]) => ({ merchant: k, ...v }));
  const sel = $('sc-merchant');
  sel.replaceChildren(...list.map((m, i) => { const o = el('option', m.name || m.merchant || m.merchant_id || i); o.value = i; return o; }));
  const show = () => { const m = list[Number(sel.value)]; $('scorecard').replaceChildren(m ? render(m) : el('p', '—')); };
  sel.onchange = show;
  show();
}

const pending = new Set();
function soon(fn) { if (pending.has(fn)) return; pending.add(fn); setTimeout(() => { pending.delete(fn); fn().catch((e) => notify(e.message)); }, 200); }

await refresh();
loadFigures();
setInterval(tick, 1000);
setInterval(() => soon(refresh), 15000);
liveEvents((ev) => {
  if (['call', 'ticket', 'operator'].includes(ev.subject)) soon(refresh);
  if (ev.name === 'ticket.closed') soon(loadFigures);
}, { since: await latestSeq(), onReconnect: () => soon(refresh) });
document.body.dataset.ready = '1';
