// The ticket board's row buttons: what the ticket's own page does (dispatch again, add a
// note, hand it to a colleague, ring the resident, cancel with a reason), from the board.
// A button that needs words (a note, a reason, whom to, which phone) opens a small form
// in a row below the ticket; the board's refreshes keep that form and what was typed.
import { el, T, stateName, notify } from './common.js';
import { allowed, redispatch, addNote, reassign, cancelTicket, callPhone, phonesOf, assignees } from './ticket_actions.js';

// the one form open under a row: { ticketId, kind, row }
let open = null;
let people = null;

function say(text) {
  const msg = document.getElementById('board-msg');
  if (msg) msg.textContent = text;
}

// An action's error in the page's words, under the board and in the corner.
const act = (fn) => async (e) => {
  e?.preventDefault?.();
  try { await fn(); } catch (err) { say(err.message); notify(err.message); }
};

function close() {
  open?.row.remove();
  open = null;
}

function button(label, cls, disabled, onClick) {
  const b = el('button', label, `small ${cls}`);
  b.type = 'button';
  b.disabled = disabled;
  b.addEventListener('click', onClick);
  return b;
}

// The form under a ticket's row for one action; `done` refreshes the board.
async function formFor(t, kind, done) {
  const cols = document.querySelector('#board-panel thead tr')?.children.length || 8;
  const row = el('tr', null, 'board-form');
  row.dataset.ticketId = t.id;
  row.dataset.kind = kind;
  const td = el('td');
  td.colSpan = cols;
  const form = el('form', null, 'row');
  const finish = (message) => { close(); say(message); return done(); };
  if (kind === 'note') {
    const text = el('textarea');
    text.maxLength = 500; text.rows = 2; text.required = true; text.placeholder = T('tk_note_ph');
    text.setAttribute('aria-label', T('tk_note'));
    const submit = el('button', T('tk_add_note'), 'primary'); submit.type = 'submit';
    form.append(text, submit);
    form.addEventListener('submit', act(async () => { await addNote(t.id, text.value); await finish(T('tk_noted')); }));
  } else if (kind === 'assign') {
    people ??= await assignees();
    const sel = el('select');
    sel.required = true; sel.setAttribute('aria-label', T('tk_assign_to'));
    sel.replaceChildren(...people.filter((p) => p.user_id !== t.assigned_to).map((p) => {
      const o = el('option', `${p.name} · ${stateName(p.state)}`); o.value = p.user_id; return o;
    }));
    const submit = el('button', T('tk_assign'), 'primary'); submit.type = 'submit';
    form.append(el('span', T('tk_assign_to')), sel, submit);
    form.addEventListener('submit', act(async () => {
      const userId = Number(sel.value);
      await reassign(t.id, userId);
      await finish(T('tk_reassigned', { name: people.find((p) => p.user_id === userId)?.name || '' }));
    }));
  } else if (kind === 'cancel') {
    const reason = el('input');
    reason.maxLength = 200; reason.required = true; reason.placeholder = T('tk_cancel_reason_ph');
    reason.setAttribute('aria-label', T('tk_cancel_reason'));
    const submit = el('button', T('cancel'), 'danger'); submit.type = 'submit';
    form.append(el('span', T('tk_cancel_reason')), reason, submit);
    form.addEventListener('submit', act(async () => { await cancelTicket(t.id, reason.value); await finish(T('tk_cancelled')); }));
  } else if (kind === 'call') {
    // one button per phone of the resident, by the phone's id (no number on the page)
    const phones = await phonesOf(t.resident_id);
    form.append(...phones.map((p) => button(`📞 ${T('tk_call')} · ${T(`pk_${p.kind}`)} ${p.masked}`, 'call-phone', false,
      act(async () => { await callPhone(p.id); close(); say(T('tk_calling')); }))));
    if (!phones.length) form.append(el('span', T('tk_no_phone'), 'muted'));
  }
  const shut = el('button', T('close'), 'small'); shut.type = 'button';
  shut.addEventListener('click', close);
  form.append(shut);
  td.append(form);
  row.append(td);
  return row;
}

// The cell of a ticket's row with its action buttons; `done` refreshes the board.
export function actionsCell(t, done) {
  const can = allowed(t);
  const td = el('td', null, 'row-actions');
  const toggle = (kind) => act(async () => {
    const same = open && open.ticketId === t.id && open.kind === kind;
    close();
    if (same) return;
    const row = await formFor(t, kind, done);
    open = { ticketId: t.id, kind, row };
    document.querySelector(`#tickets tr[data-ticket-id="${t.id}"]:not(.board-form)`)?.after(row);
    row.querySelector('textarea, input, select')?.focus();
  });
  td.append(
    button(T('tk_redispatch'), 'b-redispatch', !can.redispatch, act(async () => {
      await redispatch(t.id); say(T('tk_dispatched')); await done();
    })),
    button(T('tk_note'), 'b-note', !can.note, toggle('note')),
    button(T('tk_assign'), 'b-assign', !can.assign, toggle('assign')),
    button(T('tk_call'), 'b-call', !can.call, toggle('call')),
    button(T('cancel'), 'b-cancel danger', !can.cancel, toggle('cancel')),
  );
  return td;
}

// After the board is redrawn: the open form goes back under its ticket's row (the same
// element, so what was typed stays), or away when the ticket left the board.
export function keepOpenForm(body) {
  if (!open) return;
  const row = body.querySelector(`tr[data-ticket-id="${open.ticketId}"]:not(.board-form)`);
  if (row) row.after(open.row); else close();
}
