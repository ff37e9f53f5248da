// Admin pages: plain lists and forms over /api/v1. The registry admin API is another
// module's work; where its endpoint is missing the page says so and shows no data.
import { api, el, T, fmtDateTime, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const section = $('admin').dataset.section;

// section -> the endpoint it lists (a query is added for searches)
const LISTS = {
  residents: '/residents?q=',
  merchants: '/merchants',
  contracts: '/contracts',
  catalog: '/catalog',
  grids: '/grids',
  users: '/users',
  'access-log': '/access-log',
};

function notAvailable(path) {
  $('admin-status').replaceChildren(el('p', `${T('endpoint_na')} (${path})`, 'notice'));
  $('admin').dataset.available = 'no';
}

function cell(v) {
  if (v === null || v === undefined) return '';
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join('、');
  if (typeof v === 'object') return JSON.stringify(v);
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtDateTime(v);
  return String(v);
}

export function table(rows) {
  const items = Array.isArray(rows) ? rows : rows.items || rows.rows || [];
  if (!items.length) return el('p', '—', 'muted');
  const cols = [...new Set(items.flatMap((r) => Object.keys(r)))].slice(0, 12);
  const t = el('table', null, 'data');
  const head = el('tr'); for (const c of cols) head.append(el('th', T(c)));
  t.append(head);
  for (const r of items) { const tr = el('tr'); for (const c of cols) tr.append(el('td', cell(r[c]))); t.append(tr); }
  return t;
}

async function list(path) {
  $('admin-status').textContent = T('loading');
  try {
    const rows = await api('GET', path);
    $('admin-status').textContent = '';
    $('admin').dataset.available = 'yes';
    $('admin-body').replaceChildren(table(rows));
  } catch (err) {
    if (err.missing) notAvailable(path.split('?')[0]); else notify(err.message);
    $('admin-body').replaceChildren();
  }
}

async function contacts(q) {
  const rows = await api('GET', `/residents?q=${encodeURIComponent(q)}`);
  const out = el('div');
  for (const r of rows.slice(0, 10)) {
    const card = await api('GET', `/residents/${r.id}?reason=admin`);
    out.append(el('h3', `${card.name} · ${card.address}`), table(card.contacts));
  }
  $('admin-body').replaceChildren(rows.length ? out : el('p', '—', 'muted'));
}

let lastFile = null;
async function importFile(dryRun) {
  const file = $('import-file').files[0] || lastFile;
  if (!file) return;
  lastFile = file;
  const form = new FormData();
  form.append('file', file);
  const kind = $('import-kind').value;
  const path = `/registry/import/${kind}?dry_run=${dryRun ? 'true' : 'false'}`;
  try {
    const res = await api('POST', path, form);
    showImport(res, dryRun);
  } catch (err) {
    if (err.missing) { notAvailable(`POST /api/v1/registry/import/${kind}`); return; }
    if (err.data?.details?.errors) { showImport(err.data.details, dryRun); return; }
    notify(err.message);
  }
}

function showImport(res, dryRun) {
  const errors = res.errors || [];
  const n = res.rows ?? res.count ?? res.imported ?? '';
  const status = $('admin-status');
  status.replaceChildren(el('p', errors.length ? `${errors.length} ✗` : T(dryRun ? 'import_ok' : 'import_done', { n }), errors.length ? 'error' : 'tag ok'));
  $('admin-body').replaceChildren(errors.length ? table(errors.map((e) => ({ line: e.line ?? e.row, problem: e.code ?? e.field, reason: e.reason ?? e.message }))) : el('span'));
  $('admin-body').dataset.errors = String(errors.length);
  $('import-confirm').disabled = !dryRun || errors.length > 0;
}

if (section === 'import') {
  $('import-form').addEventListener('submit', (e) => { e.preventDefault(); importFile(true); });
  $('import-confirm').addEventListener('click', () => importFile(false));
} else if (section === 'contacts') {
  $('admin-search').addEventListener('submit', (e) => { e.preventDefault(); contacts($('admin-q').value.trim()).catch((err) => notify(err.message)); });
} else if (section === 'residents') {
  $('admin-search').addEventListener('submit', (e) => { e.preventDefault(); list(LISTS.residents + encodeURIComponent($('admin-q').value.trim())); });
} else {
  await list(LISTS[section]);
}
document.body.dataset.ready = '1';
