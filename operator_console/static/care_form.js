// The resident's daily care call and reminders, set from the desk card (issue 15): the
// operator turns the care call on, picks its weekdays and window, notes an away period,
// and adds or deletes medication and appointment reminders. Everything goes through the
// same API the card reads (/residents/{id}/wellbeing, /residents/{id}/reminders).
import { api, el, T, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const box = $('care-settings');
const DAYS = [1, 2, 3, 4, 5, 6, 7];
let residentId = null;

function dayBoxes(name, checked) {
  const row = el('span', null, 'days');
  for (const d of DAYS) {
    const label = el('label', null, 'inline');
    const input = el('input'); input.type = 'checkbox'; input.name = name; input.value = String(d);
    input.checked = checked.includes(d);
    label.append(input, T(`wb_d${d}`));
    row.append(label);
  }
  return row;
}

const picked = (form, name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => Number(i.value));

function input(type, name, value, label) {
  const node = el('input'); node.type = type; node.name = name; node.value = value || '';
  node.setAttribute('aria-label', label);
  return node;
}

function labelled(text, node) {
  const label = el('label', null, 'inline'); label.append(text, ' ', node);
  return label;
}

// the care call: on/off, weekdays, window; the away periods listed, one more may be added
function careForm(care) {
  const form = el('form', null, 'care-form'); form.id = 'care-form';
  const on = el('input'); on.type = 'checkbox'; on.name = 'enabled'; on.checked = care.enabled;
  form.append(el('h4', T('wellbeing')), labelled(T('cs_enabled'), on), el('br'),
    dayBoxes('days', care.enabled || care.window_start ? care.days : DAYS), el('br'),
    labelled(T('cs_window'), input('time', 'window_start', care.window_start || '08:00', T('cs_window'))), ' – ',
    input('time', 'window_end', care.window_end || '10:00', T('cs_window')));
  const away = el('ul', null, 'list compact'); away.id = 'care-away';
  const periods = [...care.away];
  const drawAway = () => {
    away.replaceChildren(...periods.map((p, n) => {
      const li = el('li', T('wb_away', { until: p.until }) + ` (${p.from})`);
      const drop = el('button', T('cs_remove'), 'small'); drop.type = 'button';
      drop.addEventListener('click', () => { periods.splice(n, 1); drawAway(); });
      li.append(' ', drop);
      return li;
    }));
  };
  drawAway();
  const from = input('date', 'away_from', '', T('cs_away_from'));
  const until = input('date', 'away_until', '', T('cs_away_until'));
  const add = el('button', T('cs_add_away'), 'small'); add.type = 'button';
  add.addEventListener('click', () => {
    if (!from.value || !until.value) return;
    periods.push({ from: from.value, until: until.value, reason: '' }); from.value = ''; until.value = ''; drawAway();
  });
  const save = el('button', T('cs_save'), 'primary'); save.type = 'submit';
  form.append(el('div', T('cs_away')), away, labelled(T('cs_away_from'), from), ' ', labelled(T('cs_away_until'), until), ' ', add, el('br'), save);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('PUT', `/residents/${residentId}/wellbeing`, {
        enabled: on.checked, days: picked(form, 'days'), window_start: form.window_start.value,
        window_end: form.window_end.value, language: care.language, away: periods,
      });
      notify(T('cs_saved'), 'info');
      document.dispatchEvent(new CustomEvent('yijing:care-changed', { detail: { residentId } }));
    } catch (err) { notify(err.message); }
  });
  return form;
}

// the reminders: one row each with its delete button, and a form for a new one
function remindersForm(reminders) {
  const wrap = el('div', null, 'reminders-form'); wrap.id = 'reminders-form';
  const list = el('ul', null, 'list compact');
  for (const x of reminders) {
    const when = x.on_date ? `${x.on_date} ${x.at}` : `${x.days.map((d) => T(`wb_d${d}`)).join(' ')} ${x.at}`;
    const li = el('li', `${T(`rm_${x.kind}`)} · ${when} · ${x.text}`); li.dataset.reminderId = x.id;
    const drop = el('button', T('cs_remove'), 'small'); drop.type = 'button';
    drop.addEventListener('click', async () => {
      try { await api('DELETE', `/reminders/${x.id}`); await load(residentId); } catch (err) { notify(err.message); }
    });
    li.append(' ', drop);
    list.append(li);
  }
  const form = el('form', null, 'row'); form.id = 'reminder-add';
  const kind = el('select'); kind.name = 'kind'; kind.setAttribute('aria-label', T('rm_kind'));
  for (const k of ['medication', 'appointment']) { const o = el('option', T(`rm_${k}`)); o.value = k; kind.append(o); }
  const text = input('text', 'text', '', T('rm_text')); text.maxLength = 200; text.placeholder = T('rm_text');
  const at = input('time', 'at', '08:00', T('rm_time'));
  const days = dayBoxes('rdays', DAYS);
  const onDate = input('date', 'on_date', '', T('rm_date')); onDate.hidden = true;
  kind.addEventListener('change', () => { days.hidden = kind.value !== 'medication'; onDate.hidden = kind.value !== 'appointment'; });
  const add = el('button', T('rm_add'), 'primary'); add.type = 'submit';
  form.append(kind, text, at, days, onDate, add);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const medication = kind.value === 'medication';
    try {
      await api('POST', `/residents/${residentId}/reminders`, {
        kind: kind.value, text: text.value, at: at.value,
        days: medication ? picked(form, 'rdays') : [], on_date: medication ? null : onDate.value || null,
      });
      notify(T('rm_added'), 'info');
      await load(residentId);
      document.dispatchEvent(new CustomEvent('yijing:care-changed', { detail: { residentId } }));
    } catch (err) { notify(err.message); }
  });
  wrap.append(el('h4', T('reminders')), list, form);
  return wrap;
}

async function load(id) {
  const [care, reminders] = await Promise.all([
    api('GET', `/residents/${id}/wellbeing`), api('GET', `/residents/${id}/reminders`),
  ]);
  if (id !== residentId) return; // another card meanwhile
  const body = box.querySelector('.care-body');
  body.replaceChildren(careForm(care), remindersForm(reminders));
}

if (box) {
  document.addEventListener('yijing:card', (e) => {
    residentId = e.detail.residentId;
    box.hidden = !residentId;
    box.open = false;
    box.querySelector('.care-body').replaceChildren();
  });
  // the forms are made when the operator opens the section, not on every card
  box.addEventListener('toggle', () => {
    if (box.open && residentId) load(residentId).catch((err) => notify(err.message));
  });
}
