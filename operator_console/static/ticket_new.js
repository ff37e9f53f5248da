// A ticket without a live call: a family member at the door, or a need phoned in on another
// line. The operator finds the resident, picks the service and writes the need; the ticket
// is made as the desk makes one (POST /tickets, no call), then its page opens to dispatch.
import { api, el, lang, T, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const zh = lang() === 'zh-CN';
let resident = null;

for (const c of await api('GET', '/catalog')) {
  const o = el('option', zh ? c.name_zh : c.name_en); o.value = c.code; $('wk-category').append(o);
}

function pick(r) {
  resident = r;
  $('wk-picked').hidden = false;
  $('wk-picked').textContent = T('wk_picked', { name: `${r.name} · ${r.address}` });
  $('wk-results').replaceChildren();
}

$('wk-search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = $('wk-q').value.trim();
  if (!q) return;
  try {
    const rows = await api('GET', `/residents?q=${encodeURIComponent(q)}`);
    $('wk-results').replaceChildren(...rows.map((r) => {
      const li = el('li'); li.dataset.residentId = r.id;
      const b = el('button', T('wk_pick'), 'pick'); b.type = 'button';
      b.addEventListener('click', () => pick(r));
      li.append(el('b', r.name), ' ', el('span', `${r.address} · ${r.grid_code}`, 'muted'), ' ', b);
      return li;
    }));
    if (!rows.length) $('wk-results').append(el('li', T('wk_none'), 'muted'));
  } catch (err) { notify(err.message); }
});

$('wk-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const msg = $('wk-msg');
  if (!resident) { msg.textContent = T('wk_pick_first'); return; }
  // who asked leads the need text, as the desk's urgency and time do
  const source = $('wk-source').selectedOptions[0].textContent;
  const description = `【${source}】 ${$('wk-description').value}`.trim();
  $('wk-create').disabled = true;
  try {
    const t = await api('POST', '/tickets', { category: $('wk-category').value, description, resident_id: resident.id });
    location.assign(`/tickets/${t.id}`);
  } catch (err) {
    msg.textContent = err.message;
    $('wk-create').disabled = false;
  }
});
document.body.dataset.ready = '1';
