// The merchant's phone page: log in with a code read out by a phone call (or sent by text
// where the phone system can), or with the one-time link from that text; then see offers
// to accept or decline and own orders to mark arrived and done or to call the resident
// through the hotline (a masked call: neither sees the other's number), and their ratings and
// no-shows to dispute (the ticket and the day only, never who rated). Polls: merchants
// have no access to the staff event stream.
import { api, el, T, lang, stateName, deadline, notify } from './common.js';

const $ = (id) => document.getElementById(id);
const zh = lang() === 'zh-CN';

function showError(err) {
  if (err.status === 429) {
    const minutes = Math.max(1, Math.ceil((err.data?.details?.retry_after_s || 60) / 60));
    $('m-error').textContent = T('mc_rate_limited', { n: minutes });
  } else {
    $('m-error').textContent = err.message;
  }
}

async function login() {
  $('code-request').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('m-error').textContent = '';
    const channel = e.submitter?.value === 'sms' ? 'sms' : 'voice';
    for (const b of $('code-request').querySelectorAll('button')) b.disabled = true;
    try {
      const sent = await api('POST', '/merchant-login/request', { phone: $('m-phone').value, channel, lang: lang() });
      const minutes = Math.round(sent.expires_in_s / 60);
      $('m-sent').textContent = T(sent.channel === 'sms' ? 'mc_texted' : 'mc_calling', { n: minutes });
      $('code-verify').dataset.channel = sent.channel;
      $('code-request').hidden = true;
      $('code-verify').hidden = false;
      $('m-code').focus();
    } catch (err) { showError(err); }
    for (const b of $('code-request').querySelectorAll('button')) b.disabled = false;
  });
  $('code-verify').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('m-error').textContent = '';
    try {
      await api('POST', '/merchant-login/verify', { phone: $('m-phone').value, code: $('m-code').value });
      location.assign('/merchant');
    } catch (err) {
      if (err.status === 401) { $('m-error').textContent = T('mc_wrong_code'); $('m-code').select(); }
      else showError(err);
    }
  });
  $('m-again').addEventListener('click', () => {
    $('m-error').textContent = '';
    $('m-code').value = '';
    $('code-verify').hidden = true;
    $('code-request').hidden = false;
  });
  // a one-time link: take the token out of the address bar at once, log in on a tap
  // (a tap, not on load: a link previewer opening the page must not spend it)
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if ($('use-link')) {
    history.replaceState(null, '', '/merchant/login');
    if (!token) { $('link-login').hidden = true; $('code-request').hidden = false; return; }
    $('use-link').addEventListener('click', async () => {
      $('use-link').disabled = true;
      try {
        await api('POST', '/merchant-login/link', { token });
        location.assign('/merchant');
      } catch (err) {
        $('m-error').textContent = err.status === 401 ? T('mc_link_bad') : err.message;
        $('link-login').hidden = true;
        $('code-request').hidden = false;
      }
    });
  }
}

function card(o, buttons) {
  const node = $('order-tpl').content.firstElementChild.cloneNode(true);
  node.dataset.ticketId = o.ticket_id; node.dataset.state = o.state;
  node.querySelector('.what').textContent = `#${o.ticket_id} ${zh ? o.category_zh : o.category_en}${o.urgency !== 'routine' ? ' · ' + stateName(o.urgency) : ''}`;
  node.querySelector('.desc').textContent = [o.booking ? `${T('tk_booking')} ${o.booking.date} ${o.booking.from}–${o.booking.until}` : '', o.description || ''].filter(Boolean).join(' · ');
  node.querySelector('.addr').textContent = T('labelled', { label: T('address'), value: o.address || '—' });
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
    // a masked call: the service rings this phone, then the resident; no number is shown
    // a booked visit the merchant cannot make: the service offers it to others in time
    ...(o.state === 'accepted' && o.booking ? [[T('tk_book_merchant_cancel'), 'cancel-booking', () => api('POST', `/tickets/${o.ticket_id}/booking/cancel`, {})]] : []),
    ...(['accepted', 'in_service'].includes(o.state) ? [[T('mc_connect'), 'connect', async () => {
      await api('POST', `/merchant/orders/${o.ticket_id}/connect`, {});
      notify(T('mc_connecting'), 'info');
    }]] : []),
  ])));
  if (!data.orders.length) $('orders').append(el('p', T('no_orders'), 'muted'));
}

function ratedCard(r) {
  const node = $('rated-tpl').content.firstElementChild.cloneNode(true);
  node.dataset.ticketId = r.ticket_id; node.dataset.kind = r.kind;
  node.querySelector('.what').textContent = `#${r.ticket_id} ${zh ? r.category_zh : r.category_en} · ${r.day || ''}`;
  node.querySelector('.answer').textContent = r.kind === 'rating' ? stateName(r.rating) : T('dispute_kind_no_show');
  const state = node.querySelector('.dispute-state');
  if (r.dispute) {
    state.textContent = T(`dispute_${r.dispute.state}`) + (r.dispute.note ? ` · ${r.dispute.note}` : '');
    node.dataset.dispute = r.dispute.state;
    return node;
  }
  // a form opened by the button, kept open across the page's polling (see refreshRatings)
  const form = node.querySelector('.dispute-form');
  const b = el('button', T('dispute'), 'dispute'); b.type = 'button';
  b.addEventListener('click', () => { form.hidden = false; b.hidden = true; form.reason.focus(); });
  node.querySelector('.actions').append(b);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const send = form.querySelector('button'); send.disabled = true;
    try {
      await api('POST', `/merchant/tickets/${r.ticket_id}/disputes`, { kind: r.kind, reason: form.reason.value });
      await refreshRatings(true);
    } catch (err) { notify(err.message); send.disabled = false; }
  });
  return node;
}

async function refreshRatings(force = false) {
  // a merchant typing a reason keeps their words: no redraw while a form is open
  if (!force && [...document.querySelectorAll('.dispute-form')].some((f) => !f.hidden)) return;
  const items = await api('GET', '/merchant/ratings');
  $('ratings').replaceChildren(...items.map(ratedCard));
  if (!items.length) $('ratings').append(el('p', T('no_ratings'), 'muted'));
}

if ($('merchant-login')) login();
else {
  await refresh(); await refreshRatings();
  setInterval(() => { refresh().catch(() => {}); refreshRatings().catch(() => {}); }, 4000);
}
document.body.dataset.ready = '1';
