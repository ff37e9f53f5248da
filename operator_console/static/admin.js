// Admin pages: lists and create / edit forms over /api/v1. Every value reaches the page
// through textContent or an input's value, never as HTML. A form keeps what was typed when
// the server refuses it: the message shows next to the field at fault.
import { api, el, T, fmtDateTime, notify, groupName, fieldErrorText } from './common.js';

const $ = (id) => document.getElementById(id);
const section = $('admin').dataset.section;
const formBox = $('admin-form-box');

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
// the domain's lists the forms pick from, from the server (operator_console/enums.py): each
// with its values in form order and the prefix of their words in the catalog
const ENUMS = JSON.parse(document.getElementById('enums')?.textContent || '{}');
const GROUPS = ENUMS.groups.values;
const WEEKDAYS = ENUMS.weekdays.values;
// a little under the server's 2 MB body limit: refuse here, before anything is sent
const MAX_BODY = 1_900_000;

function notAvailable(path) {
  $('admin-status').replaceChildren(el('p', `${T('endpoint_na')} (${path})`, 'notice'));
  $('admin').dataset.available = 'no';
}

function cell(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'boolean') return v ? '✓' : '✗';
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join(T('list_sep'));
  if (typeof v === 'object') return JSON.stringify(v);
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtDateTime(v);
  return String(v);
}

// `heads` names a column's heading key where the usual `col_<column>` does not fit
export function table(rows, cols, onEdit, heads = {}) {
  const items = Array.isArray(rows) ? rows : rows.items || rows.rows || [];
  if (!items.length) return el('p', '—', 'muted');
  cols = cols || [...new Set(items.flatMap((r) => Object.keys(r)))].slice(0, 12);
  const t = el('table', null, 'data');
  const head = el('tr'); for (const c of cols) head.append(el('th', heads[c] ? T(heads[c]) : T(`col_${c}`) === `col_${c}` ? T(c) : T(`col_${c}`)));
  if (onEdit) head.append(el('th', ''));
  t.append(head);
  for (const r of items) {
    const tr = el('tr');
    for (const c of cols) {
      const coded = (c.endsWith('status') || ['role', 'urgency', 'from', 'to'].includes(c)) && r[c];
      // a merchant kind is an open list: a kind without words of its own shows as stored
      const kind = c === 'kind' && typeof r[c] === 'string' && T(`kind_${r[c]}`) !== `kind_${r[c]}`;
      const text = coded ? T(`v_${r[c]}`) : kind ? T(`kind_${r[c]}`) : cell(r[c]);
      tr.append(el('td', text, /^\d{4}-\d\d-\d\d$/.test(text) || /^\+\d/.test(text) ? 'nowrap' : undefined));
    }
    if (onEdit) {
      const td = el('td', null, 'nowrap'); const b = el('button', T('edit'), 'edit small'); b.type = 'button';
      b.addEventListener('click', () => guard(() => onEdit(r))());
      td.append(b); tr.append(td);
    }
    tr.dataset.id = String(r.id ?? r.code ?? r.merchant_id ?? '');
    t.append(tr);
  }
  return t;
}

const guard = (fn) => async (...args) => { try { await fn(...args); } catch (err) { notify(err.message); } };

async function list(path, cols, onEdit, heads) {
  $('admin-status').textContent = T('loading');
  try {
    const rows = await api('GET', path);
    $('admin-status').textContent = '';
    $('admin').dataset.available = 'yes';
    $('admin-body').replaceChildren(table(rows, cols, onEdit, heads));
    return rows;
  } catch (err) {
    if (err.missing) notAvailable(path.split('?')[0]); else notify(err.message);
    $('admin-body').replaceChildren();
    return [];
  }
}

// -- form building --
let seq = 0;
function control(spec, value) {
  const id = `f-${spec.name}-${++seq}`;
  let input;
  if (spec.type === 'select') {
    input = el('select');
    for (const [v, label] of spec.options) { const o = el('option', label); o.value = v; input.append(o); }
    input.value = value ?? spec.options[0]?.[0] ?? '';
  } else if (spec.type === 'textarea' || spec.type === 'lines') {
    input = el('textarea'); input.rows = spec.rows || 2;
    input.value = spec.type === 'lines' ? (value || []).join('\n') : (value ?? '');
  } else if (spec.type === 'checkbox') {
    input = el('input'); input.type = 'checkbox'; input.checked = Boolean(value);
  } else if (spec.type === 'multi') {
    input = el('select'); input.multiple = true; input.size = spec.options.length;
    for (const [v, label] of spec.options) { const o = el('option', label); o.value = v; o.selected = (value || []).includes(v); input.append(o); }
  } else {
    input = el('input'); input.type = ['csv', undefined].includes(spec.type) ? 'text' : spec.type;
    input.value = value ?? '';
    if (spec.type === 'number') { input.inputMode = 'numeric'; }
  }
  input.id = id; input.name = spec.name;
  if (spec.placeholder) input.placeholder = spec.placeholder;
  if (spec.readonly) input.disabled = true;
  return input;
}

// A field: label, control and the place its error shows. `read()` gives the value to send.
function field(spec, value) {
  if (spec.custom) return spec.custom(spec, value);
  const wrap = el('div', null, `field${spec.wide ? ' wide' : ''}${spec.type === 'checkbox' ? ' check' : ''}`);
  wrap.dataset.field = spec.name;
  const input = control(spec, value);
  const label = el('label', T(spec.label || spec.name) + (spec.required ? ' *' : ''));
  label.htmlFor = input.id;
  const error = el('div', null, 'field-error'); error.setAttribute('role', 'alert');
  if (spec.type === 'checkbox') wrap.append(input, label, error); else wrap.append(label, input, error);
  if (spec.help) wrap.append(el('div', T(spec.help), 'muted small'));
  const read = () => {
    if (spec.type === 'checkbox') return input.checked;
    const raw = input.value.trim();
    if (spec.type === 'number') return raw === '' ? null : Number(raw);
    if (spec.type === 'lines') return raw.split(/[\n,，、;；]+/).map((s) => s.trim()).filter(Boolean);
    if (spec.type === 'csv') return raw.split(/[,，、;；]+/).map((x) => x.trim()).filter(Boolean);
    if (spec.type === 'date') return raw || null;
    if (spec.nullable && raw === '') return null;
    return raw;
  };
  const check = () => {
    const raw = spec.type === 'checkbox' ? '' : input.value.trim();
    if (spec.required && !raw) return T('required');
    if (spec.max && raw.length > spec.max) return T('too_long', { max: spec.max, n: raw.length });
    if (spec.type === 'number' && raw !== '' && !/^-?\d+(\.\d+)?$/.test(raw)) return T('err_number');
    return '';
  };
  return { name: spec.name, node: wrap, read, check, error, input, skip: spec.skip };
}

// Checkboxes for a fixed set of values (groups, service grids).
function checkboxes(options) {
  return (spec, value) => {
    const wrap = el('fieldset', null, `field${spec.wide ? ' wide' : ''}`); wrap.dataset.field = spec.name;
    wrap.append(el('legend', T(spec.label || spec.name)));
    const boxes = [];
    for (const [v, label] of options()) {
      const l = el('label', null, 'inline'); const c = el('input'); c.type = 'checkbox'; c.value = v; c.checked = (value || []).includes(v);
      l.append(c, ' ', label); wrap.append(l, ' '); boxes.push(c);
    }
    const error = el('div', null, 'field-error'); error.setAttribute('role', 'alert'); wrap.append(error);
    return { name: spec.name, node: wrap, error, read: () => boxes.filter((b) => b.checked).map((b) => b.value), check: () => '' };
  };
}

// Rows that can be added, removed and (for the contact cascade) reordered.
function rowsEditor({ columns, ordered, empty }) {
  return (spec, value) => {
    const wrap = el('fieldset', null, 'field wide rows-editor'); wrap.dataset.field = spec.name;
    wrap.append(el('legend', T(spec.label || spec.name)));
    const body = el('div', null, 'rows');
    const error = el('div', null, 'field-error'); error.setAttribute('role', 'alert');
    const add = el('button', `+ ${T(spec.addLabel || 'add_row')}`, 'small add-row'); add.type = 'button';
    const rows = [];
    const renumber = () => rows.forEach((r, i) => { r.pos.textContent = String(i + 1); r.node.dataset.index = String(i); });
    const addRow = (item) => {
      const node = el('div', null, 'editor-row');
      const pos = el('span', '', 'pos');
      const fields = columns.map((c) => {
        const input = control({ ...c, name: `${spec.name}-${c.name}` }, c.get ? c.get(item) : item?.[c.name]);
        input.setAttribute('aria-label', T(c.label || c.name)); input.placeholder = T(c.placeholder || c.label || c.name);
        input.dataset.col = c.name; if (c.size) input.style.flex = String(c.size);
        return { c, input };
      });
      const row = { node, pos, fields };
      const tools = el('span', null, 'tools');
      if (ordered) {
        const up = el('button', '↑', 'small up'); up.type = 'button'; up.title = T('move_up');
        up.addEventListener('click', () => { const i = rows.indexOf(row); if (i > 0) { rows.splice(i, 1); rows.splice(i - 1, 0, row); body.insertBefore(node, rows[i].node); renumber(); } });
        tools.append(up);
      }
      const rm = el('button', '✕', 'small remove'); rm.type = 'button'; rm.title = T('remove_row');
      rm.addEventListener('click', () => { rows.splice(rows.indexOf(row), 1); node.remove(); renumber(); });
      tools.append(rm);
      // a checkbox says what it is next to it (a placeholder cannot)
      const shown = fields.map((f) => (f.c.type === 'checkbox' ? el('label', null, 'row-check') : f.input));
      fields.forEach((f, i) => { if (shown[i] !== f.input) shown[i].append(f.input, T(f.c.label)); });
      node.append(pos, ...shown, tools);
      rows.push(row); body.append(node); renumber();
    };
    add.addEventListener('click', () => addRow(empty));
    for (const item of value || []) addRow(item);
    wrap.append(body, add, error);
    const read = () => rows.map((r) => {
      const out = {};
      for (const { c, input } of r.fields) {
        if (c.type === 'checkbox') { out[c.name] = input.checked; continue; }
        if (c.type === 'multi') { out[c.name] = Array.from(input.selectedOptions, (o) => o.value); continue; }
        const raw = input.value.trim();
        out[c.name] = c.type === 'csv' ? raw.split(/[,，、;；]+/).map((x) => x.trim()).filter(Boolean) : raw;
      }
      return out;
    // a row is empty when only its settings (defaults) are filled in
    }).filter((o) => columns.filter((c) => !c.setting).some(({ name }) => { const v = o[name]; return (Array.isArray(v) ? v.length : v) && v !== 'mobile' && v !== 'family'; }));
    const check = () => {
      for (const [i, r] of rows.entries()) {
        for (const { c, input } of r.fields) {
          if (c.max && input.value.trim().length > c.max) return `${T('position', { n: i + 1 })} ${T(c.label || c.name)}: ${T('too_long', { max: c.max, n: input.value.trim().length })}`;
        }
      }
      return '';
    };
    return { name: spec.name, node: wrap, error, read, check, addRow };
  };
}

function makeForm({ title, fields, values, submitLabel, onSubmit, onError, extra }) {
  const form = el('form', null, 'admin-form'); form.noValidate = true;
  form.append(el('h3', title));
  const grid = el('div', null, 'form-grid');
  const made = fields.map((spec) => field(spec, values?.[spec.name]));
  for (const f of made) grid.append(f.node);
  const top = el('div', null, 'form-error'); top.setAttribute('role', 'alert');
  const buttons = el('div', null, 'row');
  const save = el('button', submitLabel || T('save'), 'primary'); save.type = 'submit'; save.id = 'form-save';
  const cancel = el('button', T('close'), ''); cancel.type = 'button';
  cancel.addEventListener('click', () => { formBox.hidden = true; formBox.replaceChildren(); });
  buttons.append(save, cancel);
  form.append(top, grid, buttons);
  if (extra) form.append(extra);
  const byName = Object.fromEntries(made.map((f) => [f.name, f]));
  const clear = () => { top.textContent = ''; for (const f of made) { f.error.textContent = ''; f.node.classList.remove('has-error'); } };
  const fieldError = (name, message) => {
    const f = byName[name];
    if (!f) { top.append(el('div', message)); return; }
    f.node.classList.add('has-error');
    if (f.error.textContent) f.error.append(el('br'));
    f.error.append(message);
  };
  const showError = (err) => {
    const details = err.data?.details;
    if (err.status === 413) { top.textContent = T('err_too_big'); return; }
    if (Array.isArray(details) && details.length) {
      for (const d of details) {
        const parts = String(d.field || '').split('.');
        const name = parts[0] === 'body' ? '' : parts[0];
        const where = parts.length > 1 && /^\d+$/.test(parts[1]) ? `${T('position', { n: Number(parts[1]) + 1 })} ` : '';
        fieldError(name || '_', `${where}${fieldErrorText(d)}`);
        if (name === 'version') top.replaceChildren(el('div', T('err_stale')));
      }
      return;
    }
    top.textContent = err.message;
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    let bad = false;
    for (const f of made) { const problem = f.check(); if (problem) { fieldError(f.name, problem); bad = true; } }
    if (bad) { top.textContent = T('fix_fields'); focusFirstError(form, top); return; }
    const data = {};
    for (const f of made) if (!f.skip) data[f.name] = f.read();
    if (JSON.stringify(data).length > MAX_BODY) { top.textContent = T('err_too_big'); return; }
    save.disabled = true;
    try {
      await onSubmit(data, { fieldError, byName });
    } catch (err) {
      showError(err);
      if (onError) onError(err);
      form.dataset.errors = String(form.querySelectorAll('.has-error').length);
      focusFirstError(form, top);
    } finally { save.disabled = false; }
  });
  return { form, byName, fieldError, top };
}

// Bring the first refused field (or the form's own message) into view, cursor in it.
function focusFirstError(form, top) {
  const bad = form.querySelector('.has-error');
  (bad || top).scrollIntoView({ block: 'center' });
  bad?.querySelector('input, select, textarea')?.focus({ preventScroll: true });
}

function openForm(form) {
  formBox.replaceChildren(form);
  formBox.hidden = false;
  formBox.scrollIntoView({ block: 'nearest' });
  form.querySelector('input:not([disabled]), select, textarea')?.focus();
}

function saved(message) {
  notify(message, 'info');
  $('admin-status').replaceChildren(el('span', message, 'tag ok'));
}

// -- reference data the forms pick from --
let gridsCache = null;
async function grids() { gridsCache = gridsCache || await api('GET', '/grids'); return gridsCache; }
let catalogCache = null;
async function catalog() { catalogCache = catalogCache || await api('GET', '/catalog'); return catalogCache; }
let merchantsCache = null;
async function merchants() { merchantsCache = merchantsCache || await api('GET', '/merchants'); return merchantsCache; }
const catName = (c) => (document.documentElement.lang === 'en' ? c.name_en : c.name_zh);
const opts = (name) => ENUMS[name].values.map((v) => [v, T(`${ENUMS[name].prefix}${v}`)]);

// -- grids --
function gridForm(values) {
  const create = !values;
  const { form } = makeForm({
    title: create ? T('new_grids') : `${T('edit')} · ${values.code}`,
    values,
    fields: [
      { name: 'code', label: 'f_grid_code', required: true, max: 32, readonly: !create, skip: !create, placeholder: 'BG09' },
      { name: 'name', label: 'col_name', required: true, max: 64 },
      { name: 'community', label: 'f_community', max: 64 },
      { name: 'worker_name', label: 'worker_name', max: 64 },
      { name: 'worker_phone', label: 'worker_phone', max: 32 },
    ],
    onSubmit: async (data) => {
      const out = create ? await api('POST', '/grids', data) : await api('PATCH', `/grids/${encodeURIComponent(values.code)}`, { ...data, version: values.version });
      gridsCache = null;
      await showGrids();
      saved(T('saved_x', { x: out.code }));
      gridForm(out);
    },
  });
  form.id = 'grid-form';
  openForm(form);
}
const showGrids = () => list('/grids', ['code', 'name', 'community'], (r) => gridForm(r));

// -- catalog --
async function categoryForm(row) {
  const values = row ? await api('GET', `/catalog/${encodeURIComponent(row.code)}`) : { urgency: 'routine', deadline_minutes: 120, sort_order: 0 };
  const create = !row;
  const { form } = makeForm({
    title: create ? T('new_catalog') : `${T('edit')} · ${catName(values)}`,
    values: { ...values, merchant_kinds: (values.merchant_kinds || []).join(', ') },
    fields: [
      { name: 'code', label: 'f_code', required: true, max: 32, readonly: !create, placeholder: 'haircut', help: create ? 'h_code' : '' },
      { name: 'name_zh', label: 'f_name_zh', required: true, max: 64 },
      { name: 'name_en', label: 'f_name_en', required: true, max: 64 },
      { name: 'urgency', label: 'urgency', type: 'select', options: opts('urgency') },
      { name: 'deadline_minutes', label: 'f_deadline_minutes', type: 'number', required: true },
      { name: 'sort_order', label: 'f_sort_order', type: 'number' },
      { name: 'keypad', label: 'f_keypad', readonly: true, skip: true, help: 'h_keypad' },
      { name: 'merchant_kinds', label: 'f_merchant_kinds', type: 'csv', placeholder: 'pharmacy, shop' },
      { name: 'text_zh', label: 'f_text_zh', max: 200, wide: true },
      { name: 'text_en', label: 'f_text_en', max: 200, wide: true },
      // a self-paid service: the resident agrees to the price before it is dispatched
      { name: 'needs_consent', label: 'f_needs_consent', type: 'checkbox', help: 'h_needs_consent' },
    ],
    onSubmit: async (data) => {
      data.code = create ? data.code : values.code;
      data.sort_order = data.sort_order ?? 0;
      const out = create ? await api('POST', '/catalog', data) : await api('PUT', `/catalog/${encodeURIComponent(values.code)}`, { ...data, version: values.version });
      catalogCache = null;
      await showCatalog();
      saved(T('saved_x', { x: catName(out) }));
      await categoryForm(out);
    },
  });
  form.id = 'category-form';
  openForm(form);
}
const showCatalog = () => list('/catalog', ['code', 'name_zh', 'urgency', 'deadline_minutes', 'keypad', 'sort_order'], (r) => categoryForm(r));

// -- merchants --
function spansText(spans) { return (spans || []).map((s) => `${s[0]}-${s[1]}`).join(', '); }
function parseSpans(text) {
  const t = text.trim();
  if (!t || /^(休息|关闭|closed?|-)$/i.test(t)) return [];
  return t.split(/[,，;；\s]+/).filter(Boolean).map((part) => {
    const m = part.match(/^(\d{1,2}:\d{2})[-–~至到](\d{1,2}:\d{2})$/);
    if (!m) throw new Error(T('err_spans', { s: part }));
    return [m[1].padStart(5, '0'), m[2].padStart(5, '0')];
  });
}
function hoursEditor(spec, value) {
  const wrap = el('fieldset', null, 'field wide hours'); wrap.dataset.field = spec.name;
  wrap.append(el('legend', T('f_hours')), el('div', T('h_hours'), 'muted small'));
  const inputs = WEEKDAYS.map((d) => {
    const l = el('label', null, 'inline day'); const i = el('input'); i.id = `hours-${d}`; i.value = spansText(value?.[String(d)]);
    i.placeholder = T('day_closed'); l.append(el('span', T(`wd_${d}`)), i); wrap.append(l); return i;
  });
  const error = el('div', null, 'field-error'); error.setAttribute('role', 'alert'); wrap.append(error);
  const read = () => { const out = {}; WEEKDAYS.forEach((d, k) => { const s = parseSpans(inputs[k].value); if (s.length) out[String(d)] = s; }); return out; };
  const check = () => { try { read(); return ''; } catch (e) { return e.message; } };
  return { name: spec.name, node: wrap, error, read, check };
}
function holidaysEditor(spec, value) {
  const f = field({ name: spec.name, label: 'f_holidays', type: 'textarea', rows: 3, wide: true, help: 'h_holidays' },
    Object.entries(value || {}).map(([d, s]) => `${d} ${s.length ? spansText(s) : T('day_closed')}`).join('\n'));
  const read = () => {
    const out = {};
    for (const line of f.input.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const m = line.match(/^(\d{4}-\d{2}-\d{2})\s*(.*)$/);
      if (!m) throw new Error(T('err_holiday', { s: line }));
      out[m[1]] = parseSpans(m[2]);
    }
    return out;
  };
  return { ...f, read, check: () => { try { read(); return ''; } catch (e) { return e.message; } } };
}
function servicesEditor(cats) {
  return (spec, value) => {
    const wrap = el('fieldset', null, 'field wide services'); wrap.dataset.field = spec.name;
    wrap.append(el('legend', T('f_services')));
    const have = Object.fromEntries((value || []).map((s) => [s.category, s]));
    const rows = cats.map((c) => {
      const l = el('label', null, 'inline service'); const box = el('input'); box.type = 'checkbox'; box.value = c.code; box.checked = c.code in have;
      const was = have[c.code] || {};
      const note = el('input'); note.placeholder = T('f_price_note'); note.value = was.price_note || ''; note.setAttribute('aria-label', `${catName(c)} ${T('f_price_note')}`);
      // who pays and the resident's share in yuan: said on the offer call and to the resident
      const kind = el('select'); kind.setAttribute('aria-label', `${catName(c)} ${T('f_price_kind')}`);
      for (const [k, word] of [['', '—'], ...opts('price_kinds')]) { const o = el('option', word); o.value = k; kind.append(o); }
      kind.value = was.price_kind || '';
      const yuan = el('input'); yuan.type = 'number'; yuan.min = '0'; yuan.max = '100000'; yuan.step = '1'; yuan.className = 'yuan';
      yuan.placeholder = T('f_price_yuan'); yuan.value = was.price_yuan ?? ''; yuan.setAttribute('aria-label', `${catName(c)} ${T('f_price_yuan')}`);
      l.append(box, ' ', catName(c)); wrap.append(el('div', null, 'service-row')); wrap.lastChild.append(l, kind, yuan, note);
      return { box, note, kind, yuan, code: c.code };
    });
    const error = el('div', null, 'field-error'); error.setAttribute('role', 'alert'); wrap.append(error);
    const read = () => rows.filter((r) => r.box.checked).map((r) => ({
      category: r.code, price_note: r.note.value.trim(), price_kind: r.kind.value || null,
      price_yuan: r.yuan.value === '' ? null : Number(r.yuan.value),
    }));
    const check = () => { const long = rows.find((r) => r.note.value.trim().length > 100); return long ? T('too_long', { max: 100, n: long.note.value.trim().length }) : ''; };
    return { name: spec.name, node: wrap, error, read, check };
  };
}
async function merchantForm(row) {
  const create = !row;
  const values = row ? await api('GET', `/merchants/${row.id}`) : { capacity: 3, radius_m: 0, contract_status: 'active', hours: Object.fromEntries(WEEKDAYS.map((d) => [String(d), [['08:00', '20:00']]])) };
  const gridList = await grids(); const cats = await catalog();
  const gridOpts = gridList.map((g) => [g.code, `${g.code} ${g.name}`]);
  const kinds = [...new Set((await merchants()).map((m) => m.kind))];
  const fields = [
    { name: 'name', label: 'col_name', required: true, max: 100 },
    { name: 'kind', label: 'f_kind', required: true, max: 32, help: 'h_kind', placeholder: kinds.join(' / ') },
    { name: 'external_code', label: 'f_external_code', max: 32, nullable: true },
    { name: 'grid_code', label: 'grid', type: 'select', options: gridOpts },
    { name: 'address', label: 'address', max: 200, wide: true },
    { name: 'phones', label: 'f_order_phones', type: 'lines', help: 'h_phones', rows: 2 },
    { name: 'capacity', label: 'f_capacity', type: 'number' },
    { name: 'radius_m', label: 'f_radius_m', type: 'number' },
    { name: 'service_grids', label: 'f_service_grids', custom: checkboxes(() => gridOpts), wide: true },
    { name: 'services', custom: servicesEditor(cats) },
    { name: 'hours', custom: hoursEditor },
    { name: 'holidays', custom: holidaysEditor },
  ];
  if (create) {
    fields.push(
      { name: 'contract_status', label: 'f_contract_status', type: 'select', options: opts('contract') },
      { name: 'contract_start', label: 'f_contract_start', type: 'date' },
      { name: 'contract_end', label: 'f_contract_end', type: 'date' },
      { name: 'contract_signed_by', label: 'f_signed_by', max: 64 },
    );
  }
  const { form } = makeForm({
    title: create ? T('new_merchants') : `${T('edit')} · ${values.name}`,
    values,
    fields,
    onSubmit: async (data) => {
      const out = create ? await api('POST', '/merchants', data) : await api('PATCH', `/merchants/${values.id}`, { ...data, version: values.version });
      merchantsCache = null;
      await showMerchants();
      saved(T('saved_x', { x: out.name }));
      await merchantForm(out);
    },
  });
  form.id = 'merchant-form';
  if (!create) form.append(el('p', T('h_contract_elsewhere'), 'muted small'));
  openForm(form);
}
const showMerchants = () => list('/merchants', ['id', 'name', 'kind', 'grid_code', 'contract_status', 'contract_end'], (r) => merchantForm(r));

// -- contracts --
async function contractForm(row) {
  const m = await api('GET', `/merchants/${row.merchant_id}`);
  const history = el('div', null, 'history');
  history.append(el('h3', T('history')), table(m.contract_history.slice().reverse(), ['status', 'start', 'end', 'signed_by', 'note', 'by', 'at']));
  const { form } = makeForm({
    title: `${T('adm_contracts')} · ${m.name}`,
    values: { status: m.contract_status, start: m.contract_start, end: m.contract_end, signed_by: m.contract_signed_by },
    fields: [
      { name: 'status', label: 'f_contract_status', type: 'select', options: opts('contract') },
      { name: 'signed_by', label: 'f_signed_by', max: 64 },
      { name: 'start', label: 'f_contract_start', type: 'date' },
      { name: 'end', label: 'f_contract_end', type: 'date' },
      { name: 'note', label: 'f_note', max: 200, wide: true, placeholder: T('h_contract_note') },
    ],
    extra: history,
    onSubmit: async (data) => {
      await api('POST', `/merchants/${m.id}/contract`, data);
      merchantsCache = null;
      await showContracts();
      saved(T('saved_x', { x: m.name }));
      await contractForm(row);
    },
  });
  form.id = 'contract-form';
  openForm(form);
}
const showContracts = () => list('/contracts', ['merchant', 'contract_status', 'contract_start', 'contract_end', 'contract_signed_by'], (r) => contractForm(r));

// -- residents and their contact cascade --
const contactColumns = [
  { name: 'name', label: 'name', max: 64, size: 2 },
  { name: 'relation', label: 'f_relation', max: 32, size: 1 },
  { name: 'kind', label: 'f_contact_kind', type: 'select', options: opts('contact_kinds'), size: 1 },
  { name: 'phones', label: 'f_contact_phones', type: 'csv', get: (c) => (c?.phones || []).join(', '), size: 3 },
  { name: 'when_to_call', label: 'f_when_to_call', max: 100, size: 2 },
  // what the contact is told about a ticket, how, and whether not at night (dispatch.family)
  { name: 'notify_events', label: 'f_notify_events', type: 'multi', options: opts('family_events'), size: 2, setting: true },
  { name: 'notify_by', label: 'f_notify_by', type: 'select', options: opts('family_channels'), size: 1, setting: true },
  { name: 'notify_quiet', label: 'f_notify_quiet', type: 'checkbox', size: 1, setting: true },
];
const contactsSpec = { name: 'contacts', label: 'contacts', addLabel: 'add_contact', custom: rowsEditor({ columns: contactColumns, ordered: true, empty: { kind: 'family', notify_events: ['late', 'no_show', 'emergency'], notify_by: 'text', notify_quiet: true } }) };
const phonesSpec = {
  name: 'phones', label: 'f_phones', addLabel: 'add_phone',
  custom: rowsEditor({ columns: [
    { name: 'number', label: 'phone_number', size: 3 },
    { name: 'kind', label: 'f_phone_kind', type: 'select', options: opts('phone_kinds'), size: 1 },
  ], empty: { kind: 'mobile' } }),
};

async function residentForm(row) {
  const create = !row;
  const values = row ? await api('GET', `/residents/${row.id}?reason=edit`) : { status: 'registered', language: 'zh-CN', phones: [{ kind: 'mobile' }], contacts: [] };
  const gridOpts = (await grids()).map((g) => [g.code, `${g.code} ${g.name}`]);
  const masked = values.id_number || '';
  const { form } = makeForm({
    title: create ? T('new_residents') : `${T('edit')} · ${values.name}`,
    values: { ...values, id_number: '' },
    fields: [
      { name: 'name', label: 'name', required: true, max: 64 },
      { name: 'sex', label: 'sex', type: 'select', options: [['', '—'], ['男', T('male')], ['女', T('female')]] },
      { name: 'birth_year', label: 'f_birth_year', type: 'number' },
      { name: 'id_number', label: 'f_id_number', max: 18, nullable: true, placeholder: masked || '', help: masked ? 'h_id_masked' : '' },
      phonesSpec,
      { name: 'groups', label: 'groups', custom: checkboxes(() => GROUPS.map((g) => [g, groupName(g)])) },
      { name: 'grid_code', label: 'grid', type: 'select', options: gridOpts },
      { name: 'address', label: 'address', max: 200, wide: true },
      { name: 'building', label: 'f_building', max: 16 },
      { name: 'unit', label: 'f_unit', max: 16 },
      { name: 'room', label: 'f_room', max: 16 },
      { name: 'community', label: 'f_community', max: 64 },
      { name: 'mobility', label: 'f_mobility', max: 32 },
      { name: 'hearing', label: 'f_hearing', max: 32 },
      { name: 'sight', label: 'f_sight', max: 32 },
      { name: 'dialect', label: 'f_dialect', max: 32 },
      { name: 'notes', label: 'f_operator_notes', type: 'textarea', max: 1000, wide: true, placeholder: T('h_notes') },
      { name: 'health_notes', label: 'health', type: 'textarea', max: 2000, wide: true },
      { name: 'conditions', label: 'conditions', max: 500, wide: true },
      { name: 'medicines', label: 'medicines', max: 500, wide: true },
      { name: 'risk_notes', label: 'risk_notes', max: 500, wide: true },
      { name: 'key_holder', label: 'key_holder', max: 100 },
      { name: 'key_safe', label: 'key_safe', max: 200 },
      contactsSpec,
      { name: 'status', label: 'state', type: 'select', options: opts('statuses') },
      { name: 'status_reason', label: 'f_status_reason', max: 200, help: 'h_status_reason' },
    ],
    onSubmit: async (data) => {
      if (!data.id_number) delete data.id_number;
      const body = { ...data };
      if (!create) body.version = values.version ?? String(values.revision);
      const out = create ? await api('POST', '/residents', body) : await api('PATCH', `/residents/${values.id}`, body);
      const q = $('admin-q'); if (!q.value.trim()) q.value = out.name;
      await searchResidents();
      saved(T('saved_x', { x: out.name }));
      await residentForm(out);
    },
  });
  form.id = 'resident-form';
  if (!create && values.status_history?.length) {
    form.append(el('h3', T('history')), table(values.status_history.slice().reverse(), ['from', 'to', 'reason', 'by', 'at']));
  }
  openForm(form);
}

// a resident's name is 姓名, not the 名称 of a merchant or a grid
const PERSON = { name: 'col_person_name' };

async function searchResidents() {
  const q = $('admin-q').value.trim();
  if (!q) { $('admin-body').replaceChildren(el('p', T('h_search_first'), 'muted')); $('admin').dataset.available = 'yes'; return; }
  await list(LISTS.residents + encodeURIComponent(q), ['id', 'name', 'address', 'grid_name', 'status', 'phones'], (r) => residentForm(r), PERSON);
}

async function contactsForm(row) {
  const card = await api('GET', `/residents/${row.id}?reason=edit`);
  const { form } = makeForm({
    title: `${T('contacts')} · ${card.name}`,
    values: card,
    fields: [contactsSpec],
    onSubmit: async (data) => {
      const out = await api('PATCH', `/residents/${card.id}`, { contacts: data.contacts, version: String(card.revision) });
      saved(T('saved_x', { x: out.name }));
      await contactsForm(out);
    },
  });
  form.id = 'contacts-form';
  form.querySelector('h3').after(el('p', T('h_cascade'), 'muted small'));
  openForm(form);
}

// -- users --
async function userForm(row) {
  const create = !row;
  const values = row || { role: 'operator', active: true };
  const merchantOpts = [['', '—'], ...(await merchants()).map((m) => [String(m.id), `${m.id} ${m.name}`])];
  const fields = [
    { name: 'username', label: 'username', required: true, max: 64, readonly: !create, skip: !create, help: create ? 'h_username' : '' },
    { name: 'display_name', label: 'f_display_name', max: 64 },
    { name: 'role', label: 'f_role', type: 'select', options: opts('roles') },
    { name: 'merchant_id', label: 'merchant', type: 'select', options: merchantOpts },
  ];
  if (create) fields.push({ name: 'password', label: 'password', type: 'password', required: true, max: 256, help: 'h_password' });
  else fields.push({ name: 'active', label: 'f_active', type: 'checkbox' });
  const { form, byName } = makeForm({
    title: create ? T('new_users') : `${T('edit')} · ${values.username}`,
    values: { ...values, merchant_id: values.merchant_id ? String(values.merchant_id) : '' },
    fields,
    onSubmit: async (data) => {
      data.merchant_id = data.role === 'merchant' && data.merchant_id ? Number(data.merchant_id) : null;
      const out = create ? await api('POST', '/users', data) : await api('PATCH', `/users/${values.id}`, { ...data, version: values.version });
      await showUsers();
      saved(T('saved_x', { x: out.username }));
      await userForm(out);
    },
  });
  const merchantField = byName.merchant_id.node;
  const role = byName.role.input;
  const sync = () => { merchantField.hidden = role.value !== 'merchant'; };
  role.addEventListener('change', sync); sync();
  form.id = 'user-form';
  if (!create) form.append(passwordReset(values));
  openForm(form);
}
function passwordReset(user) {
  const { form } = makeForm({
    title: T('reset_password'),
    fields: [{ name: 'password', label: 'f_new_password', type: 'password', required: true, max: 256, help: 'h_password' }],
    submitLabel: T('reset_password'),
    onSubmit: async (data, { byName }) => {
      await api('POST', `/users/${user.id}/password`, data);
      byName.password.input.value = '';
      saved(T('password_set', { x: user.username }));
    },
  });
  form.id = 'password-form';
  form.classList.add('sub-form');
  const wrap = el('div'); wrap.append(form); return wrap;
}
const showUsers = () => list('/users', ['username', 'display_name', 'role', 'merchant_id', 'active'], (r) => userForm(r));

// -- access log --
const PAGE = 50;
const cursors = [];
async function accessLog(before) {
  const q = new URLSearchParams({ limit: String(PAGE) });
  const put = (key, id) => { const v = $(id).value.trim(); if (v) q.set(key, v); };
  put('username', 'al-user'); put('resident_id', 'al-resident'); put('from', 'al-from'); put('to', 'al-to');
  if (before) q.set('before', String(before));
  try {
    const rows = await api('GET', `/access-log?${q}`);
    $('admin').dataset.available = 'yes';
    $('admin-status').textContent = '';
    const shown = rows.map((r) => ({ ...r, reason: T(`why_${r.reason}`) }));
    $('admin-body').replaceChildren(table(shown, ['at', 'username', 'resident_id', 'reason', 'ref']));
    $('admin-body').dataset.query = q.toString();
    $('al-older').disabled = rows.length < PAGE;
    $('al-older').dataset.before = rows.length ? String(rows[rows.length - 1].id) : '';
    $('al-newer').disabled = cursors.length === 0;
    $('al-page').textContent = T('page_n', { n: cursors.length + 1 });
  } catch (err) {
    if (err.missing) { notAvailable('/access-log'); return; }
    $('admin-status').replaceChildren(el('p', err.message, 'error'));
  }
}

// -- failed logins --
async function loginFailures() {
  const q = new URLSearchParams({ limit: '200' });
  const put = (key, id) => { const v = $(id).value.trim(); if (v) q.set(key, v); };
  put('username', 'lf-user'); put('client', 'lf-client');
  try {
    const rows = await api('GET', `/login-failures?${q}`);
    $('admin').dataset.available = 'yes';
    $('admin-status').textContent = '';
    const shown = rows.map((r) => ({ ...r, username: r.username || T('lf_unknown_name'), outcome: T(`lf_${r.outcome}`) }));
    $('admin-body').replaceChildren(table(shown, ['at', 'username', 'client', 'outcome', 'counts']));
    $('admin-body').dataset.rows = String(rows.length);
  } catch (err) {
    if (err.missing) { notAvailable('/login-failures'); return; }
    $('admin-status').replaceChildren(el('p', err.message, 'error'));
  }
}

// -- the on-call list (emergencies): rung in this order; a row's button takes it off --
async function showOncall() {
  const rows = await api('GET', '/oncall');
  $('admin').dataset.available = 'yes';
  $('admin-body').replaceChildren(table(rows, ['position', 'label', 'phone', 'active'], async (r) => {
    if (!window.confirm(T('oncall_remove_q', { label: r.label || r.phone }))) return;
    await api('DELETE', `/oncall/${r.id}`);
    await showOncall();
  }, { phone: 'oncall_phone', label: 'oncall_label' }));
  $('admin-body').dataset.rows = String(rows.length);
}

// -- import --
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

// a row's problem in the console's words (the code as sent when it has none), and for
// the phone rules the reason too, from the ids the server sends with it
function importProblem(e) {
  const key = `imp_${e.code}`;
  return T(key) === key ? (e.code ?? e.field) : T(key);
}
function importReason(e) {
  const key = `imp_why_${e.code}`;
  if (T(key) === key) return e.reason ?? e.message;
  return T(key, { number: e.number ?? '', id: e.resident_id ?? '', lines: (e.other_lines || []).join(T('list_sep')) });
}

function showImport(res, dryRun) {
  const errors = res.errors || [];
  const n = res.rows ?? res.count ?? res.imported ?? '';
  const status = $('admin-status');
  const bad = errors.length + (res.more_errors || 0);
  status.replaceChildren(el('p', bad ? `${bad} ✗` : T(dryRun ? 'import_ok' : 'import_done', { n }), bad ? 'error' : 'tag ok'));
  if (res.import_id) {
    const done = el('p', T('import_logged', { created: res.created, updated: res.updated, unchanged: res.unchanged, id: res.import_id }), 'muted small');
    done.id = 'import-logged'; status.append(done);
  }
  $('admin-body').replaceChildren(errors.length ? table(errors.map((e) => ({ line: e.line ?? e.row, problem: importProblem(e), reason: importReason(e) }))) : el('span'));
  if (res.more_errors) $('admin-body').append(el('p', T('import_more_errors', { n: res.more_errors }), 'muted small'));
  $('admin-body').dataset.errors = String(errors.length);
  $('import-confirm').disabled = !dryRun || errors.length > 0;
}

const NEW = { residents: () => residentForm(null), merchants: () => merchantForm(null), catalog: () => categoryForm(null), grids: () => gridForm(null), users: () => userForm(null) };
$('admin-new')?.addEventListener('click', guard(() => NEW[section]()));

if (section === 'import') {
  $('import-form').addEventListener('submit', (e) => { e.preventDefault(); importFile(true); });
  $('import-confirm').addEventListener('click', () => importFile(false));
} else if (section === 'contacts') {
  $('admin').dataset.available = 'yes';
  $('admin-body').replaceChildren(el('p', T('h_search_first'), 'muted'));
  $('admin-search').addEventListener('submit', (e) => {
    e.preventDefault();
    guard(() => list(LISTS.residents + encodeURIComponent($('admin-q').value.trim()), ['id', 'name', 'address', 'status'], (r) => contactsForm(r), PERSON))();
  });
} else if (section === 'residents') {
  $('admin').dataset.available = 'yes';
  $('admin-body').replaceChildren(el('p', T('h_search_first'), 'muted'));
  $('admin-search').addEventListener('submit', (e) => { e.preventDefault(); guard(searchResidents)(); });
} else if (section === 'access-log') {
  $('al-filter').addEventListener('submit', (e) => { e.preventDefault(); cursors.length = 0; accessLog(); });
  $('al-older').addEventListener('click', () => { cursors.push($('al-older').dataset.before); accessLog(cursors[cursors.length - 1]); });
  $('al-newer').addEventListener('click', () => { cursors.pop(); accessLog(cursors[cursors.length - 1]); });
  await accessLog();
} else if (section === 'login-failures') {
  $('lf-filter').addEventListener('submit', (e) => { e.preventDefault(); loginFailures(); });
  await loginFailures();
} else if (section === 'oncall') {
  $('oncall-form').addEventListener('submit', (e) => {
    e.preventDefault();
    guard(async () => {
      await api('POST', '/oncall', { phone: $('oncall-phone').value.trim(), label: $('oncall-label').value.trim() });
      $('oncall-phone').value = ''; $('oncall-label').value = '';
      await showOncall();
    })();
  });
  await showOncall();
} else if (section === 'grids') {
  await showGrids();
} else if (section === 'catalog') {
  await showCatalog();
} else if (section === 'merchants') {
  await showMerchants();
} else if (section === 'contracts') {
  await showContracts();
} else if (section === 'users') {
  await showUsers();
} else {
  await list(LISTS[section]);
}
document.body.dataset.ready = '1';
