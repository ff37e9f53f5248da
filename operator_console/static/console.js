// The operator desk: queue with the caller's card before answering, call controls (hold,
// transfer, hang-up) and wrap-up, need capture, ranking, dispatch, the live offer cascade,
// the ticket board; a call offered to me rings (ring.js), the waits and talk time tick.
import { api, apiWithHeaders, el, liveEvents, latestSeq, fmtDateTime, fmtDuration, lang, T, stateName, deadline, notify, timelineItem, groupName, sexName, emergencyAlert } from './common.js';
import { ringFor, stopRinging, ringingCall } from './ring.js';
import { actionsCell, keepOpenForm } from './board_actions.js';

const zh = lang() === 'zh-CN';
const $ = (id) => document.getElementById(id);
const state = {
  me: null, call: null, previewCallId: null, residentId: null, category: null, ticket: null,
  catalog: [], board: [], scope: 'open', merchants: {}, heldAt: null,
  // the call the need panel is about, and whether it was handed to me by a colleague
  contextCallId: null, transferredIn: null, creating: false,
  // what the colleague who handed the caller to me said: { callId, from, note }
  handover: null,
  // the live calls as last listed; the server's clock minus this page's (the timers)
  calls: [], skew: 0,
};
const catName = (c) => (zh ? c.name_zh : c.name_en);
const guard = (fn) => async (...args) => { try { await fn(...args); } catch (err) { notify(err.message); } };

// -- operator state --------------------------------------------------------------------
async function loadMyState() {
  const s = await api('GET', '/operator/state');
  state.skew = Date.parse(s.at) - Date.now();
  // a call offered to me rings; any other state (answered, taken by someone else, rung
  // out) stops it
  if (s.state === 'reserved' && s.call_id) {
    // a new offer: the call as it is now (the list may have it from before the menu ended)
    ringFor(s, ringingCall() === s.call_id ? null : await api('GET', `/calls/${s.call_id}`));
  } else stopRinging();
  markOffered();
  $('op-state').textContent = stateName(s.state);
  $('op-state').dataset.state = s.state;
  $('op-reason').textContent = s.state === 'paused' && s.reason ? `(${$('pause-reason').querySelector(`[value="${CSS.escape(s.reason)}"]`)?.textContent || s.reason})` : '';
  // a caller handed to me (a transfer), or my call after a page reload (on the line or in
  // wrap-up): take it up here
  if (['on_call', 'wrap_up'].includes(s.state) && s.call_id && state.call?.id !== s.call_id) await adoptCall(s.call_id);
  // my call ended without my wrap-up here (its timer, another tab): the desk moves on
  else if (!s.call_id && state.call && ['available', 'paused', 'logged_out'].includes(s.state)) await dropEndedCall();
  document.dispatchEvent(new CustomEvent('yijing:operator', { detail: s }));
}

async function opState(action) {
  const current = $('op-state').dataset.state;
  const verb = action === 'available' ? (current === 'paused' ? 'resume' : 'login') : 'pause';
  await api('POST', '/operator/state', { action: verb, reason: verb === 'pause' ? $('pause-reason').value : '' });
  await loadMyState();
}

// -- queue and calls -------------------------------------------------------------------
const WAITING = ['ringing', 'ivr', 'queued'];

// The head of the queue, as many as a desk can work through; the rest is a count (a
// surge of a thousand callers is not a thousand rows on every call event).
const QUEUE_SHOWN = 100;
async function refreshQueue() {
  const [calls, headers] = await apiWithHeaders('GET', `/calls?waiting_limit=${QUEUE_SHOWN}`);
  state.calls = calls;
  const shown = calls.filter((c) => WAITING.includes(c.state)).length;
  const more = Number(headers.get('X-Waiting-Total') || shown) - shown;
  $('queue-more').hidden = more <= 0;
  $('queue-more').textContent = more > 0 ? T('queue_more', { n: more }) : '';
  const list = $('queue');
  list.replaceChildren();
  for (const c of calls) {
    const li = el('li', null, c.emergency ? 'emergency' : ''); li.dataset.callId = c.id; li.dataset.state = c.state;
    // an emergency is marked in words and a border too, never by its colour alone
    if (c.emergency) li.append(el('span', T('emergency_mark'), 'tag bad em-mark'), ' ');
    li.append(el('b', c.resident_name || T('unregistered')), ' ', el('span', c.number, 'muted'), ' ',
      el('span', stateName(c.state), 'tag' + (c.emergency ? ' bad' : '')));
    if (WAITING.includes(c.state)) {
      li.append(' ', sinceTag('wait_time', c.queued_at || c.started_at, 'wait muted'));
      const b = el('button', `${T('answer')} (F2)`, 'primary answer'); b.type = 'button';
      b.addEventListener('click', guard(() => answer(c)));
      li.append(' ', b);
    }
    const menu = menuText(c);
    if (menu) li.append(el('div', menu, 'menu muted small'));
    list.append(li);
  }
  $('queue-empty').hidden = calls.length > 0;
  markOffered();
  // the card pops on ring: preview the first waiting caller while no call is taken
  const first = calls.find((c) => WAITING.includes(c.state));
  if (!state.call && first && first.id !== state.previewCallId) {
    state.previewCallId = first.id;
    await showCard(first.resident_id, 'ring', first);
  }
}

// A ticking "label m:ss" since a moment of the server's (redrawn by `tick`).
function sinceTag(label, iso, cls) {
  const tag = el('span', null, cls); tag.dataset.since = iso || ''; tag.dataset.label = label;
  tickSince(tag);
  return tag;
}

function tickSince(tag) {
  if (!tag.dataset.since) { tag.textContent = ''; return; }
  const s = (Date.now() + state.skew - Date.parse(tag.dataset.since)) / 1000;
  tag.textContent = `${T(tag.dataset.label)} ${fmtDuration(s)}`;
}

// The way the caller came through the menu: "菜单: 0 人工" (the keys pressed, then where
// the menu sent them); nothing while they are still in it.
function menuText(c) {
  const keys = c.menu_keys || [];
  if (!c.menu_outcome && !keys.length) return '';
  const key = `menu_out_${c.menu_outcome}`;
  const where = !c.menu_outcome ? '' : !keys.length && c.menu_outcome === 'transfer' ? T('menu_direct') : T(key) !== key ? T(key) : '';
  return `${T('menu_path')}: ${[keys.join(' '), where].filter(Boolean).join(' ')}`;
}

// The caller ringing at my desk stands out in the queue too.
function markOffered() {
  for (const li of $('queue').children) li.classList.toggle('offered', Number(li.dataset.callId) === ringingCall());
}

async function answer(c) {
  if (ringingCall() === c.id) stopRinging();
  state.call = await api('POST', `/calls/${c.id}/answer`);
  state.previewCallId = c.id;
  showCall(state.call);
  await deskContext(state.call);
  if (c.resident_id !== state.residentId || !c.resident_id) await showCard(c.resident_id, 'call', c);
  $('card-status').hidden = true;
  await refreshQueue();
  loadMyState();
}

// The caller of a transfer (or of a reloaded page, or of my other tab): the card pops as on
// answering, the need panel shows the call's ticket. Whether a colleague handed the caller
// to me is read from the call's timeline (its latest answer or transfer), never guessed
// from timing: a direct answer is no transfer.
async function adoptCall(callId) {
  const c = await api('GET', `/calls/${callId}`);
  if (c.purpose === 'callout') return; // one's own click-to-call: callouts.js has it
  const took = (c.timeline || []).filter((ev) => ['call.connected', 'call.transferred', 'call.consult_started'].includes(ev.name)).pop();
  if (['call.transferred', 'call.consult_started'].includes(took?.name) && took.data?.to_operator_id === state.me?.id) {
    if (took.name === 'call.transferred') state.transferredIn = c.id;
    handedOver(c.id, took);
  }
  state.call = c; state.previewCallId = c.id;
  showCall(c);
  await deskContext(c);
  await showCard(c.resident_id, 'call', c);
  $('card-status').hidden = true;
  soon(refreshQueue);
}

// The sender's note of a transfer to me (from its `call.transferred` event).
function handedOver(callId, ev) {
  state.handover = { callId: Number(callId), from: ev.data?.from_operator || ev.actor || '', note: ev.data?.note || '', consult: ev.name === 'call.consult_started' };
}

// A call I held is over (wrap-up timed out, wrapped up in another tab): clear the desk.
async function dropEndedCall() {
  const c = await api('GET', `/calls/${state.call.id}`);
  if (['ended', 'abandoned'].includes(c.state) || c.operator_id !== state.me?.id) leaveCall();
}

// The call box: what the call is, and which controls make sense now.
function showCall(c) {
  const note = c && state.transferredIn === c.id ? T('transferred_in') : '';
  document.dispatchEvent(new CustomEvent('yijing:call', { detail: c }));
  const mine = c && state.me && c.operator_id === state.me.id;
  const atDesk = Boolean(mine && ['connected', 'on_hold'].includes(c.state));
  const held = atDesk && c.state === 'on_hold';
  $('hangup').disabled = !atDesk;
  $('hold').disabled = !atDesk;
  $('hold').textContent = held ? $('hold').dataset.resume : $('hold').dataset.hold;
  $('hold').classList.toggle('primary', held);
  $('transfer').disabled = !atDesk; $('transfer-to').disabled = !atDesk; $('transfer-note').disabled = !atDesk;
  // a consult: the caller on hold, a colleague rung or talking; complete once they answered
  const consulting = Boolean(mine && ['consult_ringing', 'consulting'].includes(c.state));
  $('consult').disabled = !atDesk; $('consult').hidden = consulting;
  $('consult-complete').hidden = !consulting; $('consult-complete').disabled = !(consulting && c.state === 'consulting');
  $('consult-cancel').hidden = !consulting; $('consult-cancel').disabled = !consulting;
  if (consulting) $('transfer-to').disabled = true;
  $('wrapup').disabled = !c || atDesk || consulting;
  state.heldAt = held && c.held_at ? new Date(c.held_at) : null;
  $('hold-time').hidden = !held;
  let tag;
  if (!c) tag = null;
  else if (!mine && ['consult_ringing', 'consulting'].includes(c.state)) tag = el('span', T('consult_in'), 'tag live');
  else if (!mine && ['connected', 'on_hold'].includes(c.state)) tag = el('span', T('transferred_out'), 'tag');
  else tag = el('span', stateName(c.state), c.state === 'connected' ? 'tag ok' : held ? 'tag live' : 'tag');
  const box = $('call-now');
  box.dataset.callId = c ? c.id : ''; // the incidents panel links the call on the desk
  const talk = $('talk-time');
  talk.hidden = !atDesk || !c.answered_at;
  talk.dataset.since = atDesk && c.answered_at ? c.answered_at : ''; talk.dataset.label = 'talk_time';
  tickSince(talk);
  const menu = c ? menuText(c) : '';
  $('call-menu').textContent = menu; $('call-menu').hidden = !menu;
  box.classList.toggle('emergency', Boolean(c?.emergency));
  if (!c) { box.replaceChildren(el('span', '—', 'muted')); return; }
  box.dataset.state = c.state;
  box.replaceChildren(el('b', `${T('calls')} #${c.id}`), ' ', el('span', c.resident_name || T('unregistered')), ' ', tag);
  if (c.emergency) box.prepend(el('span', T('emergency_mark'), 'tag bad em-mark'), ' ');
  if (note) box.append(' ', el('span', note, 'tag live'));
  const h = c && state.handover?.callId === c.id ? state.handover : null;
  if (h && (mine || h.consult)) {
    const ctx = el('div', null, 'handover'); ctx.id = 'transfer-context';
    ctx.append(el('span', T('transfer_from', { name: h.from }), 'muted'), ' ', el('b', h.note || '—'));
    box.append(ctx);
  }
  if (atDesk) soon(loadTargets);
  tick();
}

async function refreshCall() {
  if (!state.call) return;
  state.call = await api('GET', `/calls/${state.call.id}`);
  showCall(state.call);
}

async function toggleHold() {
  if (!state.call || $('hold').disabled) return;
  const verb = state.call.state === 'on_hold' ? 'unhold' : 'hold';
  state.call = await api('POST', `/calls/${state.call.id}/${verb}`);
  showCall(state.call);
}

// Who can take my caller: the supervisor desk first, then available colleagues.
async function loadTargets() {
  const t = await api('GET', '/transfer-targets');
  const sel = $('transfer-to');
  const keep = sel.value;
  const desk = el('option', T('supervisor_desk') + (t.supervisors.length ? '' : ' —')); desk.value = 'supervisor';
  const people = t.operators.map((o) => { const opt = el('option', `${o.name} · ${stateName(o.state)}`); opt.value = `user:${o.user_id}`; return opt; });
  sel.replaceChildren(desk, ...people);
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

async function transfer() {
  if (!state.call || $('transfer').disabled) return;
  const pick = $('transfer-to').value;
  const body = pick === 'supervisor' ? { to: 'supervisor' } : { to_user_id: Number(pick.slice(5)) };
  const name = $('transfer-to').selectedOptions[0]?.textContent.split(' · ')[0] || '';
  if ($('transfer-note').value.trim()) body.note = $('transfer-note').value.trim();
  state.call = await api('POST', `/calls/${state.call.id}/transfer`, body);
  $('transfer-note').value = '';
  showCall(state.call);
  notify(T('transfer_done', { name }), 'info');
  await loadMyState();
}

// Consult first: the caller is held while the chosen colleague's desk rings with the
// caller's card, ticket and my note; then complete (they take the caller) or cancel.
async function consult() {
  if (!state.call || $('consult').disabled) return;
  const pick = $('transfer-to').value;
  if (!pick.startsWith('user:')) { notify(T('transfer_to'), 'info'); return; }
  const name = $('transfer-to').selectedOptions[0]?.textContent.split(' · ')[0] || '';
  const body = { to_operator: Number(pick.slice(5)), note: $('transfer-note').value.trim() };
  state.call = await api('POST', `/calls/${state.call.id}/consult`, body);
  showCall(state.call);
  notify(T('consult_ringing_to', { name }), 'info');
}

async function consultStep(step) {
  if (!state.call) return;
  state.call = await api('POST', `/calls/${state.call.id}/consult/${step}`);
  if (step === 'complete') $('transfer-note').value = '';
  showCall(state.call);
  await loadMyState();
}

async function hangup() {
  if (state.call) await api('POST', `/calls/${state.call.id}/hangup`);
}

async function wrapUp() {
  if (!state.call || $('wrapup').disabled) return;
  await api('POST', `/calls/${state.call.id}/wrap-up`, { disposition: $('disposition').value });
  leaveCall();
  await loadMyState();
  await refreshQueue();
}

// The call is done with: the call box and the need panel are cleared, so the next caller's
// card never stands beside this caller's ticket. The card stays until the next caller's
// pops (the operator may still ring this resident back from it).
function leaveCall() {
  state.call = null; state.previewCallId = null; state.transferredIn = null; state.handover = null;
  showCall(null);
  $('wrapup').disabled = true;
  deskContext(null);
}

// -- the resident card -----------------------------------------------------------------
function field(dl, label, value, cls) {
  const dd = el('dd', value || '—'); if (cls) dd.className = cls;
  dl.append(el('dt', label), dd);
}

// Each card shown supersedes the one before: an older one whose reads come back later
// (a ring preview, then the answered call) must not add itself beside it.
let cardShown = 0;
async function showCard(residentId, reason, call) {
  const shown = ++cardShown;
  const box = $('card');
  box.replaceChildren();
  box.classList.remove('muted');
  state.residentId = residentId || null;
  document.dispatchEvent(new CustomEvent('yijing:card', { detail: { residentId: state.residentId, reason } }));
  $('card-status').hidden = reason !== 'ring';
  $('card-status').textContent = T('ringing_card');
  $('unknown').hidden = Boolean(residentId);
  if (!residentId) guard(loadGrids)();
  $('search-results').replaceChildren();
  if (!residentId) {
    box.append(el('p', `${T('unregistered')} ${call?.number || ''}`, 'error'));
    return;
  }
  const [r, open, care, reminders] = await Promise.all([
    api('GET', `/residents/${residentId}?reason=${reason}${call ? `&ref=call-${call.id}` : ''}`),
    api('GET', `/board?scope=open&resident_id=${residentId}`),
    // the daily care call is a side line of the card: the card shows without it
    api('GET', `/residents/${residentId}/wellbeing`).catch(() => null),
    // so are the medication and appointment reminders
    api('GET', `/residents/${residentId}/reminders`).catch(() => null),
  ]);
  if (shown !== cardShown) return;
  const age = r.birth_year ? new Date().getFullYear() - r.birth_year : '';
  const head = el('h3', null, 'resident-name');
  head.append(el('span', r.name, 'name'), ' ', el('span', [sexName(r.sex), age ? T('age_years', { n: age }) : ''].filter(Boolean).join(' · '), 'muted'));
  box.append(head);
  const groups = el('div', null, 'row');
  for (const g of r.groups || []) groups.append(el('span', groupName(g), 'tag'));
  if (r.status && r.status !== 'registered') groups.append(el('span', T(`v_${r.status}`), 'tag bad'));
  box.append(groups);
  const dl = el('dl');
  field(dl, T('address'), r.address);
  field(dl, T('grid'), r.grid_code);
  field(dl, T('conditions'), r.health_notes && r.health_notes.includes(r.conditions) ? r.health_notes : [r.conditions, r.health_notes].filter(Boolean).join('；'));
  field(dl, T('medicines'), r.medicines);
  field(dl, T('notes'), r.notes, r.notes ? 'note' : '');
  const contacts = el('dd');
  for (const x of r.contacts || []) {
    const row = el('div', `${x.relation} ${x.name} ${x.phone}${x.when_to_call ? (zh ? `（${x.when_to_call}）` : ` (${x.when_to_call})`) : ''}`, 'contact');
    // what the contact is told about an order, and how (dispatch.family)
    const told = (x.notify_events || []).map((e) => T(`fe_${e}`)).join(zh ? '、' : ', ');
    const by = T(`fc_${x.notify_by}`);
    if (told) row.append(el('span', ` · ${T('f_notify_events')}${zh ? `：${told}（${by}）` : `: ${told} (${by})`}`, 'muted told'));
    // click-to-call the contact, by id (callouts.js places it; a second line with a caller)
    const ring = el('button', '📞', 'call-contact'); ring.type = 'button';
    ring.dataset.calloutTarget = 'contact'; ring.dataset.calloutId = x.id; ring.title = T('co_call');
    row.append(' ', ring);
    contacts.append(row);
  }
  if (!(r.contacts || []).length) contacts.textContent = '—';
  dl.append(el('dt', T('contacts')), contacts);
  if (care) field(dl, T('wellbeing'), careLine(care));
  if (reminders && reminders.length) field(dl, T('reminders'), reminders.map(reminderLine).join('；'));
  const openDd = el('dd');
  for (const t of open) openDd.append(ticketLink(t, `${t.category_zh && zh ? t.category_zh : t.category_en || t.category_code} ${stateName(t.state)}`));
  if (!open.length) openDd.textContent = '—';
  dl.append(el('dt', T('open_tickets')), openDd);
  const recent = el('dd');
  for (const t of r.recent_tickets || []) recent.append(ticketLink(t, `${categoryLabel(t.category_code)} ${stateName(t.state)} · ${t.rating ? stateName(t.rating) : T('no_rating')}`));
  if (!(r.recent_tickets || []).length) recent.textContent = '—';
  dl.append(el('dt', T('recent_tickets')), recent);
  box.append(dl);
}

// A reminder in a few words: what kind, when (weekdays or the appointment's date), its text.
function reminderLine(x) {
  const when = x.on_date ? `${x.on_date} ${x.at}` : `${x.days.length === 7 ? T('wb_daily') : x.days.map((d) => T(`wb_d${d}`)).join(zh ? '、' : ', ')} ${x.at}`;
  return [T(`rm_${x.kind}`), when, x.text, x.enabled ? '' : T('rm_off')].filter(Boolean).join(' · ');
}

// The daily care call in one line: when, away until, how today's round stands.
function careLine(care) {
  if (!care.enabled) return T('wb_off');
  const days = care.days.length === 7 ? T('wb_daily') : care.days.map((d) => T(`wb_d${d}`)).join(zh ? '、' : ', ');
  const parts = [`${days} ${care.window_start}–${care.window_end}`];
  const today = new Date().toLocaleDateString('sv-SE', { timeZone: 'Asia/Shanghai' });
  const away = care.away.find((a) => a.from <= today && today <= a.until);
  if (away) parts.push(T('wb_away', { until: away.until }));
  const round = care.rounds[0];
  if (round && round.day === today) parts.push(T('wb_today', { state: T(`wb_s_${round.state}`) }));
  return parts.join(' · ');
}

function categoryLabel(code) {
  const c = state.catalog.find((x) => x.code === code);
  return c ? catName(c) : code;
}

function ticketLink(t, text) {
  const div = el('div');
  const a = el('a', `#${t.id}`); a.href = `/tickets/${t.id}`; a.target = '_blank';
  div.append(a, ' ', el('span', text));
  return div;
}

async function search(e) {
  e.preventDefault();
  const q = $('search-q').value.trim();
  if (!q) return;
  const rows = await api('GET', `/residents?q=${encodeURIComponent(q)}`);
  $('search-results').replaceChildren(...rows.map((r) => {
    const li = el('li');
    const b = el('button', T('use_resident')); b.type = 'button';
    b.addEventListener('click', guard(() => showCard(r.id, 'search')));
    li.append(el('b', r.name), ' ', el('span', `${r.address} · ${r.grid_code}`, 'muted'), ' ', b);
    return li;
  }));
  if (!rows.length) $('search-results').append(el('li', '—', 'muted'));
}

// Quick register of the unknown caller on my call: the number is the call's (the server
// takes it from the call, the page never sends one), the operator picks the grid.
async function loadGrids() {
  const sel = $('reg-grid');
  if (sel.options.length > 1) return;
  for (const g of await api('GET', '/grids')) { const o = el('option', `${g.code} ${g.name || ''}`.trim()); o.value = g.code; sel.append(o); }
}

async function register(e) {
  e.preventDefault();
  const msg = $('register-msg');
  if (!state.call || state.call.resident_id) { msg.textContent = T('register_answer_first'); return; }
  try {
    const r = await api('POST', `/calls/${state.call.id}/register`, { name: $('reg-name').value, address: $('reg-address').value, grid_code: $('reg-grid').value });
    msg.textContent = '';
    $('register-form').reset();
    notify(T('registered_caller', { name: r.name }), 'info');
    await showCard(r.id, 'register');
    await refreshCall();
  } catch (err) {
    msg.textContent = err.message;
  }
}

// -- need capture, ranking, dispatch ---------------------------------------------------
async function loadCatalog() {
  state.catalog = await api('GET', '/catalog');
  const box = $('categories');
  box.replaceChildren();
  for (const c of state.catalog) {
    const b = el('button', catName(c), c.urgency === 'emergency' ? 'cat emergency' : 'cat');
    b.type = 'button'; b.dataset.code = c.code;
    b.addEventListener('click', () => { if (!callHasTicket()) pickCategory(c.code); });
    box.append(b);
  }
  for (const sel of [$('f-category')]) for (const c of state.catalog) { const o = el('option', catName(c)); o.value = c.code; sel.append(o); }
}

function pickCategory(code) {
  state.category = code;
  for (const x of $('categories').children) x.classList.toggle('selected', x.dataset.code === code);
  needControls();
}

// The call at the desk has its ticket: one call, one ticket (the server refuses a second).
const callHasTicket = () => Boolean(state.call && state.ticket && state.ticket.call_id === state.call.id);

function needControls() {
  const made = callHasTicket();
  $('create-ticket').disabled = made || state.creating || !state.category;
  $('create-ticket').title = made ? T('ticket_made') : '';
  for (const id of ['description', 'urgency', 'preferred', 'booked-date', 'booked-part']) $(id).disabled = made;
}

// The need panel follows the call at the desk: its ticket, need text and category come from
// the server (the call's ticket), so a reload or a language switch keeps them, and another
// call starts on an empty panel.
async function deskContext(call) {
  const callId = call ? call.id : null;
  // the same call again (an event raced the answer): keep what the operator typed
  if (callId !== null && state.contextCallId === callId && (state.ticket || !call.ticket_id)) return;
  state.contextCallId = callId;
  state.ticket = null; state.category = null; state.creating = false;
  for (const x of $('categories').children) x.classList.remove('selected');
  $('description').value = ''; $('urgency').value = ''; $('preferred').value = '';
  $('booked-date').value = ''; $('booked-part').value = '';
  const box = $('current-ticket');
  box.replaceChildren('—'); box.classList.add('muted'); delete box.dataset.state;
  for (const id of ['candidates', 'offers', 'timeline']) $(id).replaceChildren();
  for (const id of ['dispatch', 'dispatch-selected', 'complete']) $(id).disabled = true;
  $('consent-row').hidden = true;
  needControls();
  if (call?.ticket_id) {
    state.ticket = { id: call.ticket_id };
    await showTicket();
    await showCandidates();
  }
}

async function createTicket() {
  if ($('create-ticket').disabled) return;
  // the API has no urgency or preferred-time fields yet: they lead the description
  const prefix = [];
  if ($('urgency').value) prefix.push(`【${$('urgency').selectedOptions[0].textContent}】`);
  if ($('preferred').value) prefix.push(`【${T('preferred_time')} ${$('preferred').value}】`);
  const body = { category: state.category, description: (prefix.join('') + ' ' + $('description').value).trim() };
  if (state.call) body.call_id = state.call.id;
  if (state.residentId) body.resident_id = state.residentId;
  // a booked visit: matching then takes merchants open in the window (dispatch.booking)
  const [from, until] = $('booked-part').value.split('-');
  if ($('booked-date').value && from) body.booking = { date: $('booked-date').value, from, until };
  state.creating = true; needControls();
  try {
    state.ticket = await api('POST', '/tickets', body);
  } catch (err) {
    // the call has its ticket already (another tab, a click that raced): show that one
    if (err.data?.error_id === 'ticket_exists') state.ticket = { id: err.data.details.ticket_id };
    else throw err;
    notify(err.message, 'info');
  } finally {
    state.creating = false;
  }
  if (!state.call) { // no call (a walk-in): the next need starts from a fresh pick
    state.category = null; $('description').value = '';
    for (const x of $('categories').children) x.classList.remove('selected');
  }
  $('urgency').value = ''; $('preferred').value = ''; $('booked-date').value = ''; $('booked-part').value = '';
  await showTicket();
  await showCandidates();
  refreshBoard();
}

async function showTicket() {
  const t = await api('GET', `/tickets/${state.ticket.id}`);
  state.ticket = t;
  // the call's ticket: its category stays picked and its need text shown
  if (state.call && t.call_id === state.call.id) {
    state.category = t.category_code;
    for (const x of $('categories').children) x.classList.toggle('selected', x.dataset.code === t.category_code);
    $('description').value = t.description;
  }
  needControls();
  for (const o of t.offers) state.merchants[o.merchant_id] = o.merchant;
  const box = $('current-ticket');
  box.replaceChildren();
  box.classList.remove('muted');
  const link = el('a', `#${t.id}`); link.href = `/tickets/${t.id}`; link.target = '_blank';
  const dl = deadline(t.deadline_at);
  box.append(link, ' ', el('span', categoryLabel(t.category_code)), ' ', el('span', stateName(t.state), 'tag state'), ' ', el('span', dl.text, `due ${dl.level}`));
  if (t.booking) box.append(' ', el('span', `${T('tk_booking')} ${t.booking.date} ${t.booking.from}–${t.booking.until}`, 'tag booking'));
  if (t.code_word) box.append(' ', el('span', `${T('code_word')} ${t.code_word}`, 'muted'));
  box.dataset.state = t.state;
  $('offers').replaceChildren(...t.offers.map((o) => {
    const li = el('li'); li.dataset.state = o.state; li.dataset.merchantId = o.merchant_id;
    const cls = o.state === 'accepted' ? 'tag ok' : ['declined', 'no_answer', 'busy', 'failed', 'expired'].includes(o.state) ? 'tag bad' : 'tag live';
    li.append(el('span', fmtDateTime(o.placed_at), 'muted'), ' ', el('b', o.merchant), ' ', el('span', stateName(o.state), cls));
    // click-to-call the merchant (by id: callouts.js places it)
    const ring = el('button', '📞', 'call-merchant'); ring.type = 'button';
    ring.dataset.calloutTarget = 'merchant'; ring.dataset.calloutId = o.merchant_id; ring.title = T('co_call');
    li.append(' ', ring);
    return li;
  }));
  $('timeline').replaceChildren(...t.timeline.map((ev) => timelineItem(ev, state.merchants)));
  // a self-paid category: the resident's consent to the price comes before 派单
  const waitsConsent = t.needs_consent && !t.consented_at;
  $('consent-row').hidden = !t.needs_consent;
  $('consent').disabled = !waitsConsent;
  $('consent-state').textContent = t.consented_at ? `${T('consented')} ${t.consent_by || ''} ${fmtDateTime(t.consented_at)}` : T('consent_needed');
  const canDispatch = ['new', 'unassigned'].includes(t.state) && !waitsConsent;
  $('dispatch').disabled = !canDispatch;
  $('dispatch-selected').disabled = !canDispatch;
  $('complete').disabled = !['accepted', 'in_service'].includes(t.state);
}

async function showCandidates() {
  const list = await api('GET', `/tickets/${state.ticket.id}/candidates`);
  const ol = $('candidates');
  ol.replaceChildren();
  for (const c of list.slice(0, 8)) {
    state.merchants[c.merchant_id] = c.name;
    const li = el('li', null, c.eligible ? 'candidate' : 'candidate ineligible');
    li.dataset.merchantId = c.merchant_id;
    const label = el('label', null, 'inline');
    const box = el('input'); box.type = 'checkbox'; box.value = c.merchant_id; box.disabled = !c.eligible; box.className = 'pick';
    label.append(box, ' ', el('b', c.name));
    const why = c.why.map((w) => T(`rank_${w.code}`, w));
    li.append(label, ' ');
    if (c.price) li.append(priceTag(c.price), ' ');
    li.append(el('span', why.join(' · '), 'muted small'));
    ol.append(li);
  }
  if (!list.some((c) => c.eligible)) ol.append(el('li', T('no_candidates'), 'error'));
}

// A merchant's price note: 补贴 · 自付 5 元 · the note's own text.
function priceTag(p) {
  const parts = [p.kind ? T(`price_${p.kind}`) : '', p.yuan != null ? T('price_yuan', { yuan: p.yuan }) : '', p.note || ''];
  return el('span', parts.filter(Boolean).join(' · '), 'tag price');
}

async function recordConsent() {
  if (!state.ticket) return;
  const who = $('consent-who').value.trim();
  if (!who) { notify(T('consent_who'), 'info'); return; }
  await api('POST', `/tickets/${state.ticket.id}/consent`, { who });
  await showTicket();
}

async function dispatch(selectedOnly) {
  if (!state.ticket) return;
  const picks = [...document.querySelectorAll('#candidates .pick:checked')].map((x) => Number(x.value));
  if (selectedOnly && !picks.length) { notify(T('pick_merchants_first'), 'info'); return; }
  await api('POST', `/tickets/${state.ticket.id}/dispatch`, selectedOnly ? { merchant_ids: picks } : {});
  await showTicket();
}

// -- the ticket board ------------------------------------------------------------------
async function refreshBoard() {
  const params = new URLSearchParams({ scope: state.scope });
  for (const [key, id] of [['state', 'f-state'], ['category', 'f-category'], ['grid', 'f-grid']]) if ($(id).value) params.set(key, $(id).value);
  state.board = await api('GET', `/board?${params}`);
  const grids = $('f-grid');
  for (const g of new Set(state.board.map((t) => t.grid_code).filter(Boolean))) {
    if (![...grids.options].some((o) => o.value === g)) { const o = el('option', g); o.value = g; grids.append(o); }
  }
  const body = $('tickets');
  body.replaceChildren(...state.board.map((t) => {
    const tr = el('tr'); tr.dataset.ticketId = t.id; tr.dataset.state = t.state;
    const a = el('a', `#${t.id}`); a.href = `/tickets/${t.id}`;
    const td = el('td'); td.append(a);
    const due = el('td', null, 'due'); due.dataset.deadline = t.deadline_at || ''; due.dataset.total = t.deadline_minutes || '';
    tr.append(td, el('td', t.resident_name || '—'), el('td', t.grid_code || '—'), el('td', zh ? t.category_zh : t.category_en),
      el('td', stateName(t.state) + (t.escalated ? ` ⚠ ${T('escalated')}` : '')), el('td', t.merchant || '—'), due,
      actionsCell(t, refreshBoard));
    return tr;
  }));
  keepOpenForm(body);
  tick();
}

// Countdowns turn amber then red; redrawn every second without asking the server.
function tick() {
  for (const tag of document.querySelectorAll('#queue [data-since], #talk-time')) tickSince(tag);
  if (state.heldAt) $('hold-time').textContent = `${T('hold_time')} ${fmtDuration((Date.now() - state.heldAt) / 1000)}`;
  for (const td of document.querySelectorAll('td.due')) {
    const d = deadline(td.dataset.deadline, Number(td.dataset.total) || undefined);
    td.textContent = d.text; td.className = `due ${d.level}`;
  }
}

// -- wiring ----------------------------------------------------------------------------
for (const s of ['new', 'matching', 'offering', 'accepted', 'in_service', 'completed', 'unassigned']) { const o = el('option', stateName(s)); o.value = s; $('f-state').append(o); }
for (const b of document.querySelectorAll('.scope')) {
  b.addEventListener('click', guard(async () => {
    state.scope = b.dataset.scope;
    for (const x of document.querySelectorAll('.scope')) x.classList.toggle('selected', x === b);
    await refreshBoard();
  }));
}
for (const id of ['f-state', 'f-category', 'f-grid']) $(id).addEventListener('change', guard(refreshBoard));
$('create-ticket').addEventListener('click', guard(createTicket));
$('dispatch').addEventListener('click', guard(() => dispatch(false)));
$('dispatch-selected').addEventListener('click', guard(() => dispatch(true)));
$('consent').addEventListener('click', guard(recordConsent));
$('complete').addEventListener('click', guard(async () => { await api('POST', `/tickets/${state.ticket.id}/complete`); await showTicket(); }));
$('hangup').addEventListener('click', guard(hangup));
$('hold').addEventListener('click', guard(toggleHold));
$('transfer').addEventListener('click', guard(transfer));
$('consult').addEventListener('click', guard(consult));
$('consult-complete').addEventListener('click', guard(() => consultStep('complete')));
$('consult-cancel').addEventListener('click', guard(() => consultStep('cancel')));
$('transfer-to').addEventListener('focus', guard(loadTargets));
$('wrapup').addEventListener('click', guard(wrapUp));
$('op-login').addEventListener('click', guard(() => opState('available')));
$('ring-answer').addEventListener('click', guard(async () => {
  const id = ringingCall();
  if (id) await answer(state.calls.find((c) => c.id === id) || await api('GET', `/calls/${id}`));
}));
$('op-pause').addEventListener('click', guard(() => opState('pause')));
$('search-form').addEventListener('submit', guard(search));
$('register-form').addEventListener('submit', guard(register));
// logging out mid-call: warned, and kept at the desk (the server refuses it too)
document.addEventListener('yijing:logout', (e) => {
  const c = state.call;
  if (c && c.operator_id === state.me?.id && ['connected', 'on_hold', 'consult_ringing', 'consulting'].includes(c.state)) {
    e.preventDefault();
    notify(T('logout_on_call', { id: c.id }));
  }
});

// Keyboard: F2 answers the first waiting call, F4 dispatches, F6 holds or resumes,
// F7 transfers to the chosen colleague, F8 wraps up.
document.addEventListener('keydown', (e) => {
  // F2: the call ringing for me first, else the first waiting one
  if (e.key === 'F2') { (ringingCall() ? $('ring-answer') : document.querySelector('#queue .answer'))?.click(); e.preventDefault(); }
  if (e.key === 'F4') { $('dispatch').click(); e.preventDefault(); }
  if (e.key === 'F6') { $('hold').click(); e.preventDefault(); }
  if (e.key === 'F7') { $('transfer').click(); e.preventDefault(); }
  if (e.key === 'F8') { $('wrapup').click(); e.preventDefault(); }
});

// Bursts of events refresh each view once.
const pending = new Set();
function soon(fn) { if (pending.has(fn)) return; pending.add(fn); setTimeout(() => { pending.delete(fn); guard(fn)(); }, 150); }

state.me = (await api('GET', '/me')).user;
await loadCatalog();
await loadMyState();
await refreshQueue();
await refreshBoard();
setInterval(tick, 1000);
liveEvents((ev) => {
  document.dispatchEvent(new CustomEvent('yijing:event', { detail: ev })); // other panels
  // supervisors hear every emergency at once (operators see it ringing at their desk)
  if (ev.name === 'alert.emergency' && ['supervisor', 'admin'].includes(state.me?.role)) emergencyAlert(ev);
  if (ev.subject === 'call') {
    soon(refreshQueue);
    // a colleague handed a caller to me: say so once, here and in my other tabs
    if (ev.name === 'call.transferred' && ev.data?.to_operator_id === state.me?.id) {
      state.transferredIn = Number(ev.subject_id);
      handedOver(ev.subject_id, ev);
      notify(`${T('transferred_in')} #${ev.subject_id}${ev.data?.note ? ` · ${ev.data.note}` : ''}`, 'info');
      if (state.call?.id === state.transferredIn) showCall(state.call);
    }
    const current = state.call && String(state.call.id) === ev.subject_id;
    if (ev.name === 'call.consult_started' && ev.data?.to_operator_id === state.me?.id) {
      handedOver(ev.subject_id, ev);
      notify(`${T('consult_in')} #${ev.subject_id} · ${ev.data?.from_operator || ''}${ev.data?.note ? ` · ${ev.data.note}` : ''}`, 'info');
    }
    if (ev.name === 'call.consult_failed' && current && ev.data?.operator_id === state.me?.id) notify(T('consult_failed', { id: ev.subject_id }), 'info');
    if (ev.name === 'call.transfer_unanswered' && (current || ev.data?.to_operator_id === state.me?.id)) {
      // the caller never reached the new desk and waits in the queue again: the desk that
      // did not answer lets go of the call; the one that handed it on still wraps it up
      notify(T('transfer_unanswered', { id: ev.subject_id }), 'info');
      if (ev.data?.to_operator_id === state.me?.id && current) leaveCall();
    }
    if (state.call && String(state.call.id) === ev.subject_id) soon(refreshCall);
  }
  if (ev.subject === 'operator' && state.me && ev.subject_id === String(state.me.id)) guard(loadMyState)();
  else if (ev.subject === 'operator' && !$('transfer').disabled) soon(loadTargets);
  if (ev.subject === 'ticket') {
    soon(refreshBoard);
    if (state.ticket && String(state.ticket.id) === ev.subject_id) guard(showTicket)();
  }
}, { since: await latestSeq(), onReconnect: () => { soon(refreshQueue); soon(refreshBoard); } });
document.body.dataset.ready = '1';
