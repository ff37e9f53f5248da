// One ticket: its fields, the offer cascade and the full timeline, kept live; and what an
// operator does about it from here: ring the resident (one button per phone), dispatch
// again, add a note, hand it to a colleague, cancel it with a reason; book the visit's date
// and time window (Asia/Shanghai), or cancel an accepted booked visit for its merchant.
import { api, el, liveEvents, latestSeq, fmtDateTime, lang, T, stateName, deadline, timelineItem, notify } from './common.js';
import { FINAL, allowed, redispatch, addNote, reassign, cancelTicket, callPhone, phonesOf, assignees } from './ticket_actions.js';

const $ = (id) => document.getElementById(id);
const id = $('ticket').dataset.ticketId;

// the category's name in the page's language (the ticket carries only its code)
const catalog = await api('GET', '/catalog').catch(() => []);
const catName = (code) => {
  const c = catalog.find((x) => x.code === code);
  return c ? (lang() === 'zh-CN' ? c.name_zh : c.name_en) : code;
};
// whom a ticket can be handed to (and the names of who looks after one)
const people = await assignees();
const personName = (userId) => people.find((p) => p.user_id === userId)?.name || '';
let ticket = null;
let phonesFor = null;

async function load() {
  const t = await api('GET', `/tickets/${id}`);
  ticket = t;
  const merchants = Object.fromEntries(t.offers.map((o) => [o.merchant_id, o.merchant]));
  $('ticket-state').textContent = stateName(t.state);
  $('ticket').dataset.state = t.state;
  const d = deadline(t.deadline_at);
  const rows = [
    [T('category'), catName(t.category_code)], [T('description'), t.description], [T('urgency'), stateName(t.urgency)],
    [T('deadline'), `${t.deadline_local || ''} ${['closed', 'cancelled', 'rated'].includes(t.state) ? '' : d.text}`],
    [T('merchant'), merchants[t.merchant_id] || ''], [T('tk_assignee'), personName(t.assigned_to)],
    [T('tk_booking'), t.booking ? `${t.booking.date} ${t.booking.from}–${t.booking.until}` : T('tk_booking_asap')],
    [T('code_word'), t.code_word], [T('created'), fmtDateTime(t.created_at)],
    [T('rating'), t.rating ? stateName(t.rating) : ''], [T('escalated'), t.escalated ? (t.escalation_reason || '⚠') : ''],
  ];
  $('ticket-fields').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', k), el('dd', v || '—')]));
  $('offers').replaceChildren(...t.offers.map((o) => {
    const li = el('li'); li.dataset.state = o.state;
    li.append(el('span', fmtDateTime(o.placed_at), 'muted'), ' ', el('b', o.merchant), ' ', el('span', stateName(o.state), o.state === 'accepted' ? 'tag ok' : 'tag'));
    return li;
  }));
  $('timeline').replaceChildren(...t.timeline.map((ev) => timelineItem(ev, merchants)));
  controls(t);
  if (t.resident_id && phonesFor !== t.resident_id) await loadPhones(t.resident_id);
}

// What can be done now: dispatch again only when nobody has it; a closed ticket takes notes.
function controls(t) {
  const open = !FINAL.includes(t.state);
  const can = allowed(t);
  $('tk-redispatch').disabled = !can.redispatch;
  $('tk-cancel').disabled = !can.cancel;
  $('tk-assign').disabled = !can.assign;
  $('tk-cancel-reason').disabled = !can.cancel;
  $('tk-assign-to').disabled = !can.assign;
  // a window is booked before the offers (or moved once accepted); a merchant cancels an accepted one
  const bookable = ['new', 'unassigned', 'accepted'].includes(t.state);
  for (const f of ['tk-book', 'tk-book-date', 'tk-book-part', 'tk-book-from', 'tk-book-until']) $(f).disabled = !bookable;
  $('tk-book-clear').disabled = !(t.booking && ['new', 'unassigned'].includes(t.state));
  $('tk-book-merchant-cancel').disabled = !(t.booking && t.state === 'accepted');
  if (t.booking && !$('tk-book-date').value) {
    $('tk-book-date').value = t.booking.date; $('tk-book-from').value = t.booking.from; $('tk-book-until').value = t.booking.until;
    $('tk-book-part').value = [...$('tk-book-part').options].some((o) => o.value === `${t.booking.from}-${t.booking.until}`) ? `${t.booking.from}-${t.booking.until}` : '';
  }
  const sel = $('tk-assign-to');
  const keep = sel.value;
  sel.replaceChildren(...people.filter((p) => p.user_id !== t.assigned_to).map((p) => {
    const o = el('option', `${p.name} · ${stateName(p.state)}`); o.value = p.user_id; return o;
  }));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  if (!open) say(T('tk_closed'));
}

// One click-to-call button per phone of the resident (by the phone's id: no number leaves
// the server; the operator's desk phone rings first, the outcome is recorded on the desk).
async function loadPhones(residentId) {
  phonesFor = residentId;
  const phones = await phonesOf(residentId);
  const box = $('tk-phones');
  box.replaceChildren(...phones.map((p) => {
    const b = el('button', `📞 ${T('tk_call')} · ${T(`pk_${p.kind}`)} ${p.masked}`, 'call-phone'); b.type = 'button';
    b.dataset.phoneId = p.id;
    b.addEventListener('click', act(async () => {
      await callPhone(p.id);
      say(T('tk_calling'));
    }));
    return b;
  }));
  if (!phones.length) box.append(el('span', T('tk_no_phone'), 'muted'));
}

function say(text) { $('tk-msg').textContent = text; }
// An action's error in the page's words, beside the buttons and in the corner.
const act = (fn) => async (e) => {
  e?.preventDefault?.();
  try { await fn(); } catch (err) { say(err.message); notify(err.message); }
};

$('tk-redispatch').addEventListener('click', act(async () => {
  await redispatch(id);
  say(T('tk_dispatched'));
  await load();
}));
$('tk-book-part').addEventListener('change', () => {
  const [from, until] = $('tk-book-part').value.split('-');
  if (from) { $('tk-book-from').value = from; $('tk-book-until').value = until; }
});
$('tk-book-form').addEventListener('submit', act(async () => {
  await api('PUT', `/tickets/${id}/booking`, { date: $('tk-book-date').value, from: $('tk-book-from').value, until: $('tk-book-until').value });
  say(T('tk_booked'));
  await load();
}));
$('tk-book-clear').addEventListener('click', act(async () => {
  await api('DELETE', `/tickets/${id}/booking`);
  say(T('tk_book_cleared'));
  await load();
}));
$('tk-book-merchant-cancel').addEventListener('click', act(async () => {
  await api('POST', `/tickets/${id}/booking/cancel`, {});
  say(T('tk_book_reopened'));
  await load();
}));
$('tk-note-form').addEventListener('submit', act(async () => {
  await addNote(id, $('tk-note').value);
  $('tk-note').value = '';
  say(T('tk_noted'));
  await load();
}));
$('tk-assign-form').addEventListener('submit', act(async () => {
  const userId = Number($('tk-assign-to').value);
  await reassign(id, userId);
  say(T('tk_reassigned', { name: personName(userId) }));
  await load();
}));
$('tk-cancel-form').addEventListener('submit', act(async () => {
  await cancelTicket(id, $('tk-cancel-reason').value);
  $('tk-cancel-reason').value = '';
  await load();
  say(T('tk_cancelled'));
}));

await load();
liveEvents((ev) => { if (ev.subject === 'ticket' && ev.subject_id === id) load().catch((e) => notify(e.message)); }, { since: await latestSeq(), onReconnect: load });
document.body.dataset.ready = '1';
