// The operator desk: queue, resident card, need capture, ranking, dispatch, live timeline.
import { api, el, liveEvents, fmtTime, lang } from './common.js';

const zh = lang() === 'zh-CN';
const state = { call: null, residentId: null, category: null, ticket: null, catalog: [] };
const $ = (id) => document.getElementById(id);
const STATE_NAMES = zh ? { ringing: '振铃', ivr: '语音导航', queued: '排队中', connected: '通话中', wrap_up: '整理中', ended: '已结束', abandoned: '已放弃',
  new: '新建', matching: '匹配中', offering: '派单中', accepted: '已接单', in_service: '服务中', completed: '已完成', rated: '已评价', closed: '已办结', cancelled: '已取消', unassigned: '无人接单' } : {};
const stateName = (s) => STATE_NAMES[s] || s;

async function loadCatalog() {
  state.catalog = await api('GET', '/catalog');
  const box = $('categories');
  box.replaceChildren();
  for (const c of state.catalog) {
    const b = el('button', zh ? c.name_zh : c.name_en);
    b.type = 'button'; b.dataset.code = c.code;
    b.addEventListener('click', () => {
      state.category = c.code;
      for (const x of box.children) x.classList.toggle('selected', x === b);
      $('create-ticket').disabled = false;
    });
    box.append(b);
  }
}

async function refreshQueue() {
  const calls = await api('GET', '/calls');
  const list = $('queue');
  list.replaceChildren();
  for (const c of calls) {
    const li = el('li'); li.dataset.callId = c.id;
    li.append(el('b', c.resident_name || (zh ? '未登记号码' : 'Unregistered number')), ' ', el('span', c.number, 'muted'), ' ',
      el('span', stateName(c.state), 'tag' + (c.emergency ? ' bad' : '')));
    if (!c.registered) li.append(' ', el('span', zh ? '未登记' : 'not registered', 'tag bad'));
    if (c.state === 'queued' || c.state === 'ivr' || c.state === 'ringing') {
      const b = el('button', zh ? '接听' : 'Answer', 'primary answer');
      b.addEventListener('click', () => answer(c));
      li.append(' ', b);
    }
    list.append(li);
  }
  $('queue-empty').hidden = calls.length > 0;
}

async function answer(c) {
  try {
    state.call = await api('POST', `/calls/${c.id}/answer`);
  } catch (err) { alert(err.message); return; }
  state.residentId = c.resident_id;
  $('hangup').disabled = false;
  await showCard(c.resident_id);
  refreshQueue();
}

function field(dl, label, value) {
  dl.append(el('dt', label), el('dd', value || '—'));
}

async function showCard(residentId) {
  const box = $('card');
  box.replaceChildren();
  box.classList.remove('muted');
  if (!residentId) { box.append(el('p', zh ? '未登记号码：请询问姓名地址后登记' : 'Unregistered number: ask for name and address', 'error')); return; }
  const r = await api('GET', `/residents/${residentId}?reason=call`);
  box.append(el('h3', `${r.name}（${r.sex}，${r.birth_year || ''}）`));
  const dl = el('dl');
  field(dl, zh ? '类别' : 'Group', r.groups.join('、'));
  field(dl, zh ? '地址' : 'Address', r.address);
  field(dl, zh ? '网格' : 'Grid', r.grid_code);
  field(dl, zh ? '健康情况' : 'Health', r.health_notes);
  field(dl, zh ? '用药' : 'Medicines', r.medicines);
  field(dl, zh ? '备注' : 'Notes', r.notes);
  field(dl, zh ? '紧急联系人' : 'Contacts', r.contacts.map((x) => `${x.relation} ${x.name} ${x.phone}`).join('；'));
  field(dl, zh ? '最近工单' : 'Recent tickets', r.recent_tickets.map((t) => `#${t.id} ${t.category_code} ${stateName(t.state)}${t.rating ? ' ' + t.rating : ''}`).join('；'));
  box.append(dl);
}

async function createTicket() {
  const body = { category: state.category, description: $('description').value };
  if (state.call) body.call_id = state.call.id;
  if (state.residentId) body.resident_id = state.residentId;
  try { state.ticket = await api('POST', '/tickets', body); } catch (err) { alert(err.message); return; }
  $('description').value = '';
  await showTicket();
  await showCandidates();
  refreshTickets();
}

async function showTicket() {
  const t = await api('GET', `/tickets/${state.ticket.id}`);
  state.ticket = t;
  const box = $('current-ticket');
  box.replaceChildren();
  const link = el('a', `#${t.id}`); link.href = `/tickets/${t.id}`;
  box.append(link, ' ', el('span', t.category_code), ' ', el('span', stateName(t.state), 'tag'), ' ', el('span', (zh ? '时限 ' : 'due ') + (t.deadline_local || ''), 'muted'));
  box.dataset.state = t.state;
  const tl = $('timeline');
  tl.replaceChildren(...t.timeline.map(timelineItem));
  $('dispatch').disabled = !['new', 'unassigned'].includes(t.state);
  $('complete').disabled = !['accepted', 'in_service'].includes(t.state);
}

function timelineItem(ev) {
  const li = el('li');
  li.dataset.name = ev.name;
  const extra = ev.data.merchant || ev.data.rating || ev.data.reason || '';
  li.append(el('span', fmtTime(ev.occurred_at), 'muted'), ' ', el('b', ev.name), ' ', el('span', extra));
  return li;
}

async function showCandidates() {
  const list = await api('GET', `/tickets/${state.ticket.id}/candidates`);
  const ol = $('candidates');
  ol.replaceChildren();
  for (const c of list.slice(0, 8)) {
    const li = el('li', null, c.eligible ? 'candidate' : 'candidate ineligible');
    li.dataset.merchantId = c.merchant_id;
    li.append(el('b', c.name), ' ', el('span', c.reasons.join(' · '), 'muted'));
    ol.append(li);
  }
  if (!list.some((c) => c.eligible)) ol.append(el('li', zh ? '没有可派的商家，工单将等待人工处理' : 'No merchant can take this now', 'error'));
}

async function refreshTickets() {
  const rows = await api('GET', '/tickets?state=open');
  const body = $('tickets');
  body.replaceChildren();
  for (const t of rows) {
    const tr = el('tr');
    const a = el('a', `#${t.id}`); a.href = `/tickets/${t.id}`;
    const td = el('td'); td.append(a);
    tr.append(td, el('td', t.category_code), el('td', stateName(t.state) + (t.escalated ? ' ⚠' : '')), el('td', t.deadline_local));
    body.append(tr);
  }
}

async function opState(action) {
  const res = await api('POST', '/operator/state', { action, reason: action === 'pause' ? 'break' : '' });
  $('op-state').textContent = res.state;
}

$('create-ticket').addEventListener('click', createTicket);
$('dispatch').addEventListener('click', async () => { try { await api('POST', `/tickets/${state.ticket.id}/dispatch`, {}); } catch (err) { alert(err.message); } });
$('complete').addEventListener('click', async () => { try { await api('POST', `/tickets/${state.ticket.id}/complete`); } catch (err) { alert(err.message); } });
$('hangup').addEventListener('click', async () => { if (state.call) await api('POST', `/calls/${state.call.id}/hangup`); });
$('wrapup').addEventListener('click', async () => { if (state.call) { await api('POST', `/calls/${state.call.id}/wrap-up`, { disposition: 'done' }); state.call = null; $('wrapup').disabled = true; } });
$('op-login').addEventListener('click', () => opState('login'));
$('op-pause').addEventListener('click', () => opState('pause'));

// Keyboard: F2 answers the first waiting call, F4 dispatches, F8 wraps up.
document.addEventListener('keydown', (e) => {
  if (e.key === 'F2') { document.querySelector('#queue .answer')?.click(); e.preventDefault(); }
  if (e.key === 'F4') { $('dispatch').click(); e.preventDefault(); }
  if (e.key === 'F8') { $('wrapup').click(); e.preventDefault(); }
});

let queued = false;
function soon(fn) { if (queued) return; queued = true; setTimeout(() => { queued = false; fn(); }, 150); }

await loadCatalog();
await refreshQueue();
await refreshTickets();
const start = (await api('GET', '/events?since=0')).reduce((m, e) => Math.max(m, e.seq), 0);
liveEvents((ev) => {
  if (ev.subject === 'call') {
    soon(refreshQueue);
    if (state.call && String(state.call.id) === ev.subject_id && ev.name === 'call.ended') { $('wrapup').disabled = false; $('hangup').disabled = true; }
  }
  if (ev.subject === 'ticket') {
    refreshTickets();
    if (state.ticket && String(state.ticket.id) === ev.subject_id) showTicket();
  }
}, { since: start });
document.body.dataset.ready = '1';
