// Notices to grids (outbound campaigns): write one, pick grids, send; each notice's live
// progress (a bar of calls finished, reached, the answers, unreached) redrawn on its
// campaign.* events, with its recipients' CSV.
import { api, el, liveEvents, latestSeq, T, notify } from './common.js';

const $ = (id) => document.getElementById(id);

async function loadGrids() {
  const grids = await api('GET', '/grids');
  $('n-grids').append(...grids.map((g) => {
    const label = el('label', null, 'check');
    const box = el('input'); box.type = 'checkbox'; box.name = 'grid'; box.value = g.code;
    label.append(box, ' ', g.name);
    return label;
  }));
}

function item(c) {
  const li = el('li', null, 'notice'); li.dataset.id = c.id; li.dataset.state = c.state;
  const bar = el('progress'); bar.max = 100; bar.value = c.done_share; bar.setAttribute('aria-label', T('notice_done_share'));
  const csv = el('a', T('notice_csv')); csv.href = `/api/v1/campaigns/${c.id}/recipients.csv`;
  li.append(
    el('b', c.title), ' ', el('span', T(`notice_state_${c.state}`), c.state === 'running' ? 'tag live' : 'tag'), ' ',
    bar, ' ', el('span', `${c.done_share}%`, 'share'),
    el('div', T('notice_counts', { recipients: c.recipients, reached: c.reached, unreached: c.unreached, pending: c.pending }), 'counts'),
  );
  if (c.question) li.append(el('div', T('notice_answers', { yes: c.answers.yes, no: c.answers.no }), 'answers'));
  li.append(csv);
  if (c.state === 'running') {
    const stop = el('button', T('notice_cancel'), 'cancel'); stop.type = 'button';
    stop.addEventListener('click', async () => {
      try { replace(await api('POST', `/campaigns/${c.id}/cancel`)); } catch (err) { notify(err.message); }
    });
    li.append(' ', stop);
  }
  return li;
}

function replace(c) {
  const old = document.querySelector(`#notices li[data-id='${c.id}']`);
  if (old) old.replaceWith(item(c)); else $('notices').prepend(item(c));
  $('notices-empty').hidden = true;
}

async function loadList() {
  const list = await api('GET', '/campaigns');
  $('notices').replaceChildren(...list.map(item));
  $('notices-empty').hidden = list.length > 0;
}

$('notice-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('n-error').textContent = '';
  const grids = [...document.querySelectorAll("#n-grids input[name='grid']:checked")].map((b) => b.value);
  const body = { title: $('n-title').value.trim(), text: $('n-text').value.trim(), question: $('n-question').value.trim(), grid_codes: grids };
  try {
    replace(await api('POST', '/campaigns', body));
    e.target.reset();
  } catch (err) {
    $('n-error').textContent = err.message; // in the page's words (common.js)
  }
});

await Promise.all([loadGrids(), loadList()]);
liveEvents(async (ev) => {
  if (ev.subject === 'campaign') replace(await api('GET', `/campaigns/${ev.subject_id}`));
}, { since: await latestSeq(), onReconnect: loadList });
document.body.dataset.ready = '1';
