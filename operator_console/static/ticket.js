// One ticket: its fields, the offer cascade and the full timeline, kept live.
import { api, el, liveEvents, latestSeq, fmtDateTime, lang, T, stateName, deadline, timelineItem, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const id = $('ticket').dataset.ticketId;

// the category's name in the page's language (the ticket carries only its code)
const catalog = await api('GET', '/catalog').catch(() => []);
const catName = (code) => {
  const c = catalog.find((x) => x.code === code);
  return c ? (lang() === 'zh-CN' ? c.name_zh : c.name_en) : code;
};

async function load() {
  const t = await api('GET', `/tickets/${id}`);
  const merchants = Object.fromEntries(t.offers.map((o) => [o.merchant_id, o.merchant]));
  $('ticket-state').textContent = stateName(t.state);
  $('ticket').dataset.state = t.state;
  const d = deadline(t.deadline_at);
  const rows = [
    [T('category'), catName(t.category_code)], [T('description'), t.description], [T('urgency'), stateName(t.urgency)],
    [T('deadline'), `${t.deadline_local || ''} ${['closed', 'cancelled', 'rated'].includes(t.state) ? '' : d.text}`],
    [T('merchant'), merchants[t.merchant_id] || ''], [T('code_word'), t.code_word], [T('created'), fmtDateTime(t.created_at)],
    [T('rating'), t.rating ? stateName(t.rating) : ''], [T('escalated'), t.escalated ? (t.escalation_reason || '⚠') : ''],
  ];
  $('ticket-fields').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', k), el('dd', v || '—')]));
  $('offers').replaceChildren(...t.offers.map((o) => {
    const li = el('li'); li.dataset.state = o.state;
    li.append(el('span', fmtDateTime(o.placed_at), 'muted'), ' ', el('b', o.merchant), ' ', el('span', stateName(o.state), o.state === 'accepted' ? 'tag ok' : 'tag'));
    return li;
  }));
  $('timeline').replaceChildren(...t.timeline.map((ev) => timelineItem(ev, merchants)));
}

await load();
liveEvents((ev) => { if (ev.subject === 'ticket' && ev.subject_id === id) load().catch((e) => notify(e.message)); }, { since: await latestSeq(), onReconnect: load });
document.body.dataset.ready = '1';
