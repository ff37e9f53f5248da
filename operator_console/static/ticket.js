import { api, el, liveEvents, fmtTime } from './common.js';
const id = document.getElementById('ticket').dataset.ticketId;
async function load() {
  const t = await api('GET', `/tickets/${id}`);
  const dl = document.getElementById('ticket-fields');
  dl.replaceChildren();
  for (const [k, v] of [['state', t.state], ['category', t.category_code], ['description', t.description], ['deadline', t.deadline_local], ['rating', t.rating], ['escalated', t.escalated ? t.escalation_reason : '']]) {
    dl.append(el('dt', k), el('dd', v || '—'));
  }
  document.getElementById('timeline').replaceChildren(...t.timeline.map((ev) => {
    const li = el('li'); li.dataset.name = ev.name;
    li.append(el('span', fmtTime(ev.occurred_at), 'muted'), ' ', el('b', ev.name), ' ', el('span', ev.data.merchant || ev.data.rating || ev.data.reason || ''));
    return li;
  }));
}
await load();
liveEvents((ev) => { if (ev.subject === 'ticket' && ev.subject_id === id) load(); });
