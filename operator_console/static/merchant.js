// The merchant's phone page: log in with a code sent to a registered phone, then see
// offers to accept or decline and own orders to mark arrived and done. Polls: merchants
// have no access to the staff event stream.
import { api, el, T, lang, stateName, deadline, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const zh = lang() === 'zh-CN';

async function login() {
  $('code-request').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('m-error').textContent = '';
    try {
      await api('POST', '/merchant-login/request', { phone: $('m-phone').value });
      $('code-verify').hidden = false;
      $('m-code').focus();
    } catch (err) { $('m-error').textContent = err.message; }
  });
  $('code-verify').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('POST', '/merchant-login/verify', { phone: $('m-phone').value, code: $('m-code').value });
      location.reload();
    } catch (err) { $('m-error').textContent = err.status === 401 ? (zh ? '手机号或验证码不对' : 'Wrong phone or code') : err.message; }
  });
}

function card(o, buttons) {
  const node = $('order-tpl').content.firstElementChild.cloneNode(true);
  node.dataset.ticketId = o.ticket_id; node.dataset.state = o.state;
  node.querySelector('.what').textContent = `#${o.ticket_id} ${zh ? o.category_zh : o.category_en}${o.urgency !== 'routine' ? ' · ' + stateName(o.urgency) : ''}`;
  node.querySelector('.desc').textContent = o.description || '';
  node.querySelector('.addr').textContent = `${T('address')}：${o.address || '—'}`;
  const d = deadline(o.deadline_at);
  const due = node.querySelector('.due'); due.textContent = d.text; due.className = `due ${d.level}`;
  node.querySelector('.state').textContent = stateName(o.state);
  node.querySelector('.code').textContent = o.code_word ? `${T('code_word')} ${o.code_word}` : '';
  const actions = node.querySelector('.actions');
  for (const [label, cls, fn] of buttons) {
    const b = el('button', label, cls); b.type = 'button';
    b.addEventListener('click', async () => { b.disabled = true; try { await fn(); } catch (err) { notify(err.message); } await refresh(); });
    actions.append(b);
  }
  return node;
}

async function refresh() {
  const data = await api('GET', '/merchant/orders');
  $('merchant-name').textContent = data.merchant;
  $('offers').replaceChildren(...data.offers.map((o) => card(o, [
    [T('accept'), 'primary accept', () => api('POST', `/offers/${o.offer_id}/accept`)],
    [T('decline'), 'decline', () => api('POST', `/merchant/offers/${o.offer_id}/decline`)],
  ])));
  if (!data.offers.length) $('offers').append(el('p', T('no_orders'), 'muted'));
  $('orders').replaceChildren(...data.orders.map((o) => card(o, [
    ...(o.state === 'accepted' ? [[T('arrive'), 'primary arrive', () => api('POST', `/tickets/${o.ticket_id}/arrive`)]] : []),
    ...(['accepted', 'in_service'].includes(o.state) ? [[T('complete'), 'complete', () => api('POST', `/tickets/${o.ticket_id}/complete`)]] : []),
  ])));
  if (!data.orders.length) $('orders').append(el('p', T('no_orders'), 'muted'));
}

if ($('merchant-login')) login();
else { await refresh(); setInterval(() => refresh().catch(() => {}), 4000); }
document.body.dataset.ready = '1';
