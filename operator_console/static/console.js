// The operator desk: queue with the caller's card before answering, call controls (hold,
// transfer, hang-up) and wrap-up, need capture, ranking, dispatch, the live offer cascade,
// the ticket board.
import { api, el, liveEvents, latestSeq, fmtDateTime, fmtDuration, lang, T, stateName, deadline, notify, timelineItem, groupName, sexName, emergencyAlert } from './common.js';

const zh = lang() === 'zh-CN';
const $ = (id) => document.getElementById(id);
const state = {
  me: null, call: null, previewCallId: null, residentId: null, category: null, ticket: null,
  catalog: [], board: [], scope: 'open', merchants: {}, heldAt: null, live: false,
};
const catName = (c) => (zh ? c.name_zh : c.name_en);
const guard = (fn) => async (...args) => { try { await fn(...args); } catch (err) { notify(err.message); } };

// -- operator state --------------------------------------------------------------------
async function loadMyState() {
  const s = await api('GET', '/operator/state');
  $('op-state').textContent = stateName(s.state);
  $('op-state').dataset.state = s.state;
  $('op-reason').textContent = s.state === 'paused' && s.reason ? `(${$('pause-reason').querySelector(`[value="${CSS.escape(s.reason)}"]`)?.textContent || s.reason})` : '';
  // a caller handed to me (a transfer), or my call after a page reload: take it up here
  if (s.state === 'on_call' && s.call_id && state.call?.id !== s.call_id) await adoptCall(s.call_id);
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

async function refreshQueue() {
  const calls = await api('GET', '/calls');
  const list = $('queue');
  list.replaceChildren();
  for (const c of calls) {
    const li = el('li', null, c.emergency ? 'emergency' : ''); li.dataset.callId = c.id; li.dataset.state = c.state;
    li.append(el('b', c.resident_name || T('unregistered')), ' ', el('span', c.number, 'muted'), ' ',
      el('span', stateName(c.state), 'tag' + (c.emergency ? ' bad' : '')));
    if (WAITING.includes(c.state)) {
      const b = el('button', `${T('answer')} (F2)`, 'primary answer'); b.type = 'button';
      b.addEventListener('click', guard(() => answer(c)));
      li.append(' ', b);
    }
    list.append(li);
  }
  $('queue-empty').hidden = calls.length > 0;
  // the card pops on ring: preview the first waiting caller while no call is taken
  const first = calls.find((c) => WAITING.includes(c.state));
  if (!state.call && first && first.id !== state.previewCallId) {
    state.previewCallId = first.id;
    await showCard(first.resident_id, 'ring', first);
  }
}

async function answer(c) {
  state.call = await api('POST', `/calls/${c.id}/answer`);
  state.previewCallId = c.id;
  showCall(state.call);
  if (c.resident_id !== state.residentId || !c.resident_id) await showCard(c.resident_id, 'call', c);
  $('card-status').hidden = true;
  await refreshQueue();
  loadMyState();
}

// The caller of a transfer (or of a reloaded page): the card pops as on answering.
async function adoptCall(callId) {
  const c = await api('GET', `/calls/${callId}`);
  if (c.purpose === 'callout') return; // one's own click-to-call: callouts.js has it
  const handedOver = state.live;
  state.call = c; state.previewCallId = c.id;
  showCall(c, handedOver ? T('transferred_in') : '');
  await showCard(c.resident_id, 'call', c);
  $('card-status').hidden = true;
  if (handedOver) notify(`${T('transferred_in')} #${c.id} ${c.resident_name || ''}`, 'info');
  soon(refreshQueue);
}

// The call box: what the call is, and which controls make sense now.
function showCall(c, note = '') {
  document.dispatchEvent(new CustomEvent('yijing:call', { detail: c }));
  const mine = c && state.me && c.operator_id === state.me.id;
  const atDesk = Boolean(mine && ['connected', 'on_hold'].includes(c.state));
  const held = atDesk && c.state === 'on_hold';
  $('hangup').disabled = !atDesk;
  $('hold').disabled = !atDesk;
  $('hold').textContent = held ? $('hold').dataset.resume : $('hold').dataset.hold;
  $('hold').classList.toggle('primary', held);
  $('transfer').disabled = !atDesk; $('transfer-to').disabled = !atDesk;
  $('wrapup').disabled = !c || atDesk;
  state.heldAt = held && c.held_at ? new Date(c.held_at) : null;
  $('hold-time').hidden = !held;
  let tag;
  if (!c) tag = null;
  else if (!mine && ['connected', 'on_hold'].includes(c.state)) tag = el('span', T('transferred_out'), 'tag');
  else tag = el('span', stateName(c.state), c.state === 'connected' ? 'tag ok' : held ? 'tag live' : 'tag');
  const box = $('call-now');
  box.dataset.callId = c ? c.id : ''; // the incidents panel links the call on the desk
  if (!c) { box.replaceChildren(el('span', '—', 'muted')); return; }
  box.dataset.state = c.state;
  box.replaceChildren(el('b', `${T('calls')} #${c.id}`), ' ', el('span', c.resident_name || T('unregistered')), ' ', tag);
  if (note) box.append(' ', el('span', note, 'tag live'));
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
  state.call = await api('POST', `/calls/${state.call.id}/transfer`, body);
  showCall(state.call);
  notify(T('transfer_done', { name }), 'info');
  await loadMyState();
}

async function hangup() {
  if (state.call) await api('POST', `/calls/${state.call.id}/hangup`);
}

async function wrapUp() {
  if (!state.call || $('wrapup').disabled) return;
  await api('POST', `/calls/${state.call.id}/wrap-up`, { disposition: $('disposition').value });
  state.call = null; state.previewCallId = null;
  showCall(null);
  $('wrapup').disabled = true;
  await loadMyState();
  await refreshQueue();
}

// -- the resident card -----------------------------------------------------------------
function field(dl, label, value, cls) {
  const dd = el('dd', value || '—'); if (cls) dd.className = cls;
  dl.append(el('dt', label), dd);
}

async function showCard(residentId, reason, call) {
  const box = $('card');
  box.replaceChildren();
  box.classList.remove('muted');
  state.residentId = residentId || null;
  document.dispatchEvent(new CustomEvent('yijing:card', { detail: { residentId: state.residentId, reason } }));
  $('card-status').hidden = reason !== 'ring';
  $('card-status').textContent = T('ringing_card');
  $('unknown').hidden = Boolean(residentId);
  $('search-results').replaceChildren();
  if (!residentId) {
    box.append(el('p', `${T('unregistered')} ${call?.number || ''}`, 'error'));
    return;
  }
  const [r, open] = await Promise.all([
    api('GET', `/residents/${residentId}?reason=${reason}${call ? `&ref=call-${call.id}` : ''}`),
    api('GET', `/board?scope=open&resident_id=${residentId}`),
  ]);
  const age = r.birth_year ? new Date().getFullYear() - r.birth_year : '';
  const head = el('h3', null, 'resident-name');
  head.append(el('span', r.name, 'name'), ' ', el('span', [sexName(r.sex), age ? `${age}${zh ? '岁' : ' y'}` : ''].filter(Boolean).join(' · '), 'muted'));
  box.append(head);
  const groups = el('div', null, 'row');
  for (const g of r.groups || []) groups.append(el('span', groupName(g), 'tag'));
  if (r.status && r.status !== 'registered') groups.append(el('span', stateName(r.status), 'tag bad'));
  box.append(groups);
  const dl = el('dl');
  field(dl, T('address'), r.address);
  field(dl, T('grid'), r.grid_code);
  field(dl, T('conditions'), r.health_notes && r.health_notes.includes(r.conditions) ? r.health_notes : [r.conditions, r.health_notes].filter(Boolean).join('；'));
  field(dl, T('medicines'), r.medicines);
  field(dl, T('notes'), r.notes, r.notes ? 'note' : '');
  const contacts = el('dd');
  for (const x of r.contacts || []) contacts.append(el('div', `${x.relation} ${x.name} ${x.phone}${x.when_to_call ? (zh ? `（${x.when_to_call}）` : ` (${x.when_to_call})`) : ''}`));
  if (!(r.contacts || []).length) contacts.textContent = '—';
  dl.append(el('dt', T('contacts')), contacts);
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

async function register(e) {
  e.preventDefault();
  const msg = $('register-msg');
  try {
    const r = await api('POST', '/residents', { name: $('reg-name').value, address: $('reg-address').value, phone: state.call?.number });
    msg.textContent = '';
    await showCard(r.id, 'register');
  } catch (err) {
    msg.textContent = err.missing ? T('register_na') : err.message;
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
    b.addEventListener('click', () => {
      state.category = c.code;
      for (const x of box.children) x.classList.toggle('selected', x === b);
      $('create-ticket').disabled = false;
    });
    box.append(b);
  }
  for (const sel of [$('f-category')]) for (const c of state.catalog) { const o = el('option', catName(c)); o.value = c.code; sel.append(o); }
}

async function createTicket() {
  // the API has no urgency or preferred-time fields yet: they lead the description
  const prefix = [];
  if ($('urgency').value) prefix.push(`【${$('urgency').selectedOptions[0].textContent}】`);
  if ($('preferred').value) prefix.push(`【${T('preferred_time')} ${$('preferred').value}】`);
  const body = { category: state.category, description: (prefix.join('') + ' ' + $('description').value).trim() };
  if (state.call) body.call_id = state.call.id;
  if (state.residentId) body.resident_id = state.residentId;
  state.ticket = await api('POST', '/tickets', body);
  $('description').value = ''; $('urgency').value = ''; $('preferred').value = '';
  await showTicket();
  await showCandidates();
  refreshBoard();
}

async function showTicket() {
  const t = await api('GET', `/tickets/${state.ticket.id}`);
  state.ticket = t;
  for (const o of t.offers) state.merchants[o.merchant_id] = o.merchant;
  const box = $('current-ticket');
  box.replaceChildren();
  box.classList.remove('muted');
  const link = el('a', `#${t.id}`); link.href = `/tickets/${t.id}`; link.target = '_blank';
  const dl = deadline(t.deadline_at);
  box.append(link, ' ', el('span', categoryLabel(t.category_code)), ' ', el('span', stateName(t.state), 'tag state'), ' ', el('span', dl.text, `due ${dl.level}`));
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
  const canDispatch = ['new', 'unassigned'].includes(t.state);
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
    const why = c.why ? c.why.map((w) => T(`rank_${w.code}`, w)) : c.reasons;
    li.append(label, ' ', el('span', why.join(' · '), 'muted small'));
    ol.append(li);
  }
  if (!list.some((c) => c.eligible)) ol.append(el('li', zh ? '没有可派的商家，工单将等待人工处理' : 'No merchant can take this now', 'error'));
}

async function dispatch(selectedOnly) {
  if (!state.ticket) return;
  const picks = [...document.querySelectorAll('#candidates .pick:checked')].map((x) => Number(x.value));
  if (selectedOnly && !picks.length) { notify(zh ? '请先勾选商家' : 'Tick one or more merchants first', 'info'); return; }
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
      el('td', stateName(t.state) + (t.escalated ? ` ⚠ ${T('escalated')}` : '')), el('td', t.merchant || '—'), due);
    return tr;
  }));
  tick();
}

// Countdowns turn amber then red; redrawn every second without asking the server.
function tick() {
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
$('complete').addEventListener('click', guard(async () => { await api('POST', `/tickets/${state.ticket.id}/complete`); await showTicket(); }));
$('hangup').addEventListener('click', guard(hangup));
$('hold').addEventListener('click', guard(toggleHold));
$('transfer').addEventListener('click', guard(transfer));
$('transfer-to').addEventListener('focus', guard(loadTargets));
$('wrapup').addEventListener('click', guard(wrapUp));
$('op-login').addEventListener('click', guard(() => opState('available')));
$('op-pause').addEventListener('click', guard(() => opState('pause')));
$('search-form').addEventListener('submit', guard(search));
$('register-form').addEventListener('submit', guard(register));

// Keyboard: F2 answers the first waiting call, F4 dispatches, F6 holds or resumes,
// F7 transfers to the chosen colleague, F8 wraps up.
document.addEventListener('keydown', (e) => {
  if (e.key === 'F2') { document.querySelector('#queue .answer')?.click(); e.preventDefault(); }
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
state.live = true;
liveEvents((ev) => {
  document.dispatchEvent(new CustomEvent('yijing:event', { detail: ev })); // other panels
  // supervisors hear every emergency at once (operators see it ringing at their desk)
  if (ev.name === 'alert.emergency' && ['supervisor', 'admin'].includes(state.me?.role)) emergencyAlert(ev);
  if (ev.subject === 'call') {
    soon(refreshQueue);
    const current = state.call && String(state.call.id) === ev.subject_id;
    if (ev.name === 'call.transfer_unanswered' && (current || ev.data?.to_operator_id === state.me?.id)) {
      // the caller never reached the new desk and waits in the queue again: the desk that
      // did not answer lets go of the call; the one that handed it on still wraps it up
      notify(T('transfer_unanswered', { id: ev.subject_id }), 'info');
      if (ev.data?.to_operator_id === state.me?.id && current) { state.call = null; state.previewCallId = null; showCall(null); }
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
