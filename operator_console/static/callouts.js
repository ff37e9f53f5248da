// Operators call out: the call back list (oldest first, its waiting time; answering one
// dials it), one's click-to-call (the desk phone rings first, then the number) and its
// outcome, and the emergency panel of an emergency call with its one-click checklist.
// Numbers are never sent from here: every call names who is rung by kind and id.
// console.js tells this module about the call, the card and the live events (DOM events).
import { api, el, T, fmtTime, fmtDuration, notify, stateName } from './common.js';

const $ = (id) => document.getElementById(id);
const guard = (fn) => async (...args) => { try { await fn(...args); } catch (err) { notify(err.message); } };
const st = { me: null, callout: null, call: null, residentId: null, panel: null, fetchedAt: 0 };
const LIVE = ['ringing', 'connected'];

// -- the call back list ------------------------------------------------------------------
async function refreshCallbacks() {
  const rows = await api('GET', '/callbacks');
  st.fetchedAt = Date.now();
  const list = $('callbacks');
  list.replaceChildren(...rows.map((t) => {
    const li = el('li', null, t.emergency ? 'emergency' : ''); li.dataset.ticketId = t.ticket_id;
    const waiting = el('span', '', 'tag live waiting'); waiting.dataset.waiting = t.waiting_s;
    li.append(el('b', t.resident_name || T('unregistered')), ' ', el('span', t.number || '', 'muted'), ' ', waiting, ' ',
      el('span', T('co_attempts', { n: t.attempts }), 'muted small attempts'));
    if (t.dialling) li.append(' ', el('span', T('co_dialling'), 'tag'));
    else {
      const b = el('button', T('co_dial'), 'primary dial'); b.type = 'button';
      b.addEventListener('click', guard(async () => showCallout(await api('POST', `/callbacks/${t.ticket_id}/dial`))));
      li.append(' ', b);
    }
    return li;
  }));
  $('callbacks-empty').hidden = rows.length > 0;
  tick();
}

// Waiting times count up between refreshes (from the server's figure: no clock skew).
function tick() {
  const since = (Date.now() - st.fetchedAt) / 1000;
  for (const w of document.querySelectorAll('#callbacks .waiting')) {
    w.textContent = T('co_waiting', { t: fmtDuration(Number(w.dataset.waiting) + since) });
  }
}

// -- one's click-to-call -----------------------------------------------------------------
function showCallout(c) {
  if (c && c.parent_call_id && c.parent_call_id === st.panel) { soon(refreshPanel); return; } // on the panel
  st.callout = c;
  const box = $('callout-box');
  box.hidden = !c;
  if (!c) return;
  box.dataset.state = c.state;
  const tag = el('span', stateName(c.state), c.state === 'connected' ? 'tag ok' : 'tag live');
  $('callout-now').replaceChildren(el('b', `${T('co_callout')} #${c.id}`), ' ', el('span', c.resident_name || ''), ' ', el('span', c.number || '', 'muted'), ' ', tag);
  $('callout-hangup').disabled = !LIVE.includes(c.state);
  $('callout-finish').disabled = c.state !== 'wrap_up';
  if (c.state === 'ended' || c.state === 'abandoned') {
    if (!c.answered) notify(T('co_unreached'), 'info');
    st.callout = null;
    box.hidden = true;
    soon(refreshCallbacks);
  }
}

async function refreshCallout() {
  if (!st.callout) return;
  const c = await api('GET', `/callouts/${st.callout.id}`);
  c.answered = c.timeline.some((e) => e.name === 'call.answered');
  showCallout(c);
}

async function finishCallout() {
  if (!st.callout) return;
  await api('POST', `/callouts/${st.callout.id}/wrap-up`, { outcome: $('callout-outcome').value });
  st.callout = null;
  $('callout-box').hidden = true;
  await refreshCallbacks();
}

async function callResident() {
  if (!st.residentId) return;
  await callTarget('resident', st.residentId);
}

// Any [data-callout-target] button rings that target by id; with a caller at the desk the
// callout is a second line (the caller stays the operator's call).
async function callTarget(target, id) {
  const body = { target, id };
  const c = st.call;
  if (c && st.me && c.operator_id === st.me.id && AT_DESK.includes(c.state)) body.for_call_id = c.id;
  showCallout(await api('POST', '/callouts', body));
}

// A click-to-call of mine after a page reload: pick it up again.
async function adopt(s) {
  if (!s.call_id || st.callout?.id === s.call_id || st.call?.id === s.call_id) return;
  try {
    const c = await api('GET', `/callouts/${s.call_id}`);
    c.answered = c.timeline.some((e) => e.name === 'call.answered');
    showCallout(c);
  } catch (err) {
    if (err.status !== 404) throw err; // a caller, not a callout: console.js has it
  }
}

// -- the emergency panel -----------------------------------------------------------------
const AT_DESK = ['connected', 'on_hold'];

function onCall(c) {
  st.call = c;
  const mine = c && st.me && c.operator_id === st.me.id;
  if (mine && c.emergency && AT_DESK.includes(c.state)) {
    if (st.panel !== c.id) { st.panel = c.id; soon(refreshPanel); }
  } else if (!c || !mine || c.state === 'ended') {
    st.panel = null;
    $('emergency-panel').hidden = true;
  }
}

function stepLabel(s, i) {
  if (s.kind === 'emergency') return T('co_step_120', { n: s.label });
  if (s.kind === 'contact') return T('co_step_contact', { pos: i, name: s.relation ? `${s.label}（${s.relation}）` : s.label });
  return T('co_step_grid_worker', { name: s.label || T('co_not_registered') });
}

async function refreshPanel() {
  if (!st.panel) return;
  const callId = st.panel;
  const p = await api('GET', `/calls/${callId}/emergency-panel`);
  if (st.panel !== callId) return;
  const panel = $('emergency-panel');
  panel.hidden = false;
  $('em-h').textContent = p.reason ? `${T('co_emergency_panel')} · ${p.reason}` : T('co_emergency_panel');
  const dl = $('em-card');
  dl.replaceChildren();
  for (const [key, value] of [['co_risk_notes', p.resident.risk_notes], ['medicines', p.resident.medicines],
    ['co_key_holder', p.resident.key_holder], ['co_key_safe', p.resident.key_safe]]) {
    const dd = el('dd', value || '—'); dd.dataset.field = key;
    dl.append(el('dt', T(key)), dd);
  }
  let contact = 0;
  const items = [];
  for (const s of p.steps) {
    if (s.kind === 'contact') contact += 1;
    const li = el('li', null, s.done ? 'done' : ''); li.dataset.step = s.step;
    const tick = el('input'); tick.type = 'checkbox'; tick.checked = s.done; tick.className = 'tick';
    tick.setAttribute('aria-label', `${T('co_tick')} ${stepLabel(s, contact)}`);
    tick.addEventListener('change', guard(async () => {
      await api('POST', `/calls/${callId}/emergency-panel/steps`, { step: s.step, done: tick.checked });
      await refreshPanel();
    }));
    const call = el('button', `📞 ${T('co_call')}`, s.kind === 'emergency' ? 'primary call' : 'call'); call.type = 'button';
    call.disabled = s.kind === 'grid_worker' && !s.label;
    call.addEventListener('click', guard(async () => {
      await api('POST', '/callouts', { target: s.kind, id: s.target_id, for_call_id: callId });
      await refreshPanel();
    }));
    li.append(tick, ' ', el('span', stepLabel(s, contact), 'what'), ' ', call);
    if (s.callouts.length) {
      const last = await api('GET', `/callouts/${s.callouts[s.callouts.length - 1]}`);
      const state = el('span', stateName(last.state), last.state === 'connected' ? 'tag ok callout' : 'tag live callout');
      li.append(' ', state);
      if (LIVE.includes(last.state)) {
        const hang = el('button', T('hangup'), 'hang'); hang.type = 'button';
        hang.addEventListener('click', guard(() => api('POST', `/calls/${last.id}/hangup`)));
        li.append(' ', hang);
      }
    }
    if (s.done) li.append(' ', el('span', T('co_done_by', { who: s.done_by, time: fmtTime(s.done_at) }), 'muted small done-by'));
    items.push(li);
  }
  $('em-steps').replaceChildren(...items);
}

// -- wiring ------------------------------------------------------------------------------
const pending = new Set();
function soon(fn) { if (pending.has(fn)) return; pending.add(fn); setTimeout(() => { pending.delete(fn); guard(fn)(); }, 150); }

$('callout-hangup').addEventListener('click', guard(async () => { if (st.callout) await api('POST', `/calls/${st.callout.id}/hangup`); }));
$('callout-finish').addEventListener('click', guard(finishCallout));
$('call-resident').addEventListener('click', guard(callResident));
document.addEventListener('click', (e) => {
  const b = e.target.closest?.('[data-callout-target]');
  if (b) guard(callTarget)(b.dataset.calloutTarget, Number(b.dataset.calloutId));
});
document.addEventListener('yijing:call', (e) => onCall(e.detail));
document.addEventListener('yijing:operator', (e) => guard(adopt)(e.detail));
document.addEventListener('yijing:card', (e) => {
  st.residentId = e.detail.residentId;
  $('call-resident').hidden = !st.residentId;
});
document.addEventListener('yijing:event', (e) => {
  const ev = e.detail;
  if (ev.subject === 'ticket' && (ev.name.startsWith('callback.') || ev.name.startsWith('ticket.'))) soon(refreshCallbacks);
  if (ev.subject !== 'call') return;
  if (ev.name === 'call.callout') soon(refreshCallbacks);
  if (st.callout && String(st.callout.id) === ev.subject_id) soon(refreshCallout);
  if (st.panel) soon(refreshPanel);
});

st.me = (await api('GET', '/me')).user;
await adopt(await api('GET', '/operator/state'));
await refreshCallbacks();
setInterval(tick, 1000);
document.body.dataset.callouts = '1';
