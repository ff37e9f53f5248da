// Incidents on the operator desk (issue 14): the service's proposals ("3 calls about a
// water cut in 第一网格 in the last 30 min: link?"), the outages open now with one click to
// link the call on the desk, send the one ticket to the utility, and report the fix (every
// linked caller is then called back).
import { api, el, T, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const guard = (fn) => async (...args) => { try { await fn(...args); } catch (err) { notify(err.message); } };
const fault = (category) => T(`inc_fault_${category}`);
const STATE_KEY = { open: 'inc_open', dispatched: 'inc_dispatched', fixed: 'inc_fixed_state', callbacks_done: 'inc_callbacks_done' };

function button(text, cls, onClick) {
  const b = el('button', text, cls); b.type = 'button';
  b.addEventListener('click', guard(async () => { b.disabled = true; try { await onClick(); } finally { b.disabled = false; } await refresh(); }));
  return b;
}

function deskCall() {
  const id = $('call-now')?.dataset.callId;
  return id ? Number(id) : null;
}

async function linkAll(p) {
  if (p.incident_id) {
    for (const id of p.call_ids) await api('POST', `/incidents/${p.incident_id}/calls`, { call_id: id });
  } else {
    await api('POST', '/incidents', { category: p.category, call_ids: p.call_ids });
  }
}

function proposalItem(p) {
  const li = el('li', null, 'proposal'); li.dataset.grid = p.grid_code; li.dataset.category = p.category;
  li.append(el('b', T('inc_proposal', { grid: p.grid_name, minutes: p.minutes, n: p.calls, fault: fault(p.category) })), ' ',
    button(p.incident_id ? T('inc_link_into', { id: p.incident_id }) : T('inc_link_all'), 'primary link-all', () => linkAll(p)));
  return li;
}

function incidentItem(i) {
  const li = el('li', null, 'incident'); li.dataset.incidentId = i.id; li.dataset.state = i.state;
  const cb = i.callbacks || {};
  li.append(el('b', `#${i.id} ${i.grid_name} ${fault(i.category)}`), ' ',
    el('span', T(STATE_KEY[i.state] || i.state), i.state === 'callbacks_done' ? 'tag ok' : 'tag live'), ' ',
    el('span', T('inc_linked', { n: i.linked, affected: i.affected }), 'muted linked'));
  if (i.ticket_id) { const a = el('a', `#${i.ticket_id}`); a.href = `/tickets/${i.ticket_id}`; a.target = '_blank'; li.append(' ', a); }
  if (['fixed', 'callbacks_done'].includes(i.state)) {
    li.append(' ', el('span', T('inc_callbacks', { told: cb.told || 0, unanswered: cb.unanswered || 0, failed: cb.failed || 0, pending: (cb.pending || 0) + (cb.placed || 0) }), 'muted small callbacks'));
  }
  const row = el('div', null, 'row');
  if (['open', 'dispatched'].includes(i.state)) {
    const call = deskCall();
    if (call) row.append(button(T('inc_link_call'), 'link-call', () => api('POST', `/incidents/${i.id}/calls`, { call_id: call })));
    if (i.state === 'open') row.append(button(T('inc_dispatch'), 'dispatch-incident', () => api('POST', `/incidents/${i.id}/dispatch`, {})));
    row.append(button(T('inc_fixed'), 'fixed-incident', () => api('POST', `/incidents/${i.id}/fixed`, {})));
  }
  li.append(row);
  return li;
}

async function refresh() {
  const [proposals, incidents] = await Promise.all([api('GET', '/incidents/proposals'), api('GET', '/incidents')]);
  $('inc-proposals').replaceChildren(...proposals.map(proposalItem));
  const recent = incidents.filter((i) => i.state !== 'callbacks_done').concat(incidents.filter((i) => i.state === 'callbacks_done').slice(0, 5));
  $('incidents').replaceChildren(...recent.map(incidentItem));
  $('incidents-empty').hidden = recent.length > 0 || proposals.length > 0;
  document.getElementById('incidents-panel').dataset.ready = '1';
}

let queued = false;
function soon() { if (queued) return; queued = true; setTimeout(() => { queued = false; guard(refresh)(); }, 200); }

document.addEventListener('yijing:event', (e) => {
  const ev = e.detail;
  if (ev.subject === 'incident' || ev.subject === 'ticket') soon();
});
new MutationObserver(soon).observe($('call-now'), { attributes: true, attributeFilter: ['data-call-id'] });
await guard(refresh)();
