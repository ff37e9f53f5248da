// The phone simulator: call the hotline as a resident, answer as a merchant, press keys.
import { T, api, el, refreshPhoneLine } from './common.js';
const $ = (id) => document.getElementById(id);

// in a simulated outage the hotline cannot be reached (503): the call simply does not start
async function dial(number) { try { await api('POST', '/sim/dial', { number }); } catch (err) { console.warn(err); } refresh(); }

$('dial-form').addEventListener('submit', (e) => { e.preventDefault(); dial($('dial-number').value); });

// A simulated phone outage: live calls drop, outbound calls wait until the line is back.
async function setLine(up) { await api('POST', '/sim/link', { up }); await refreshPhoneLine(); refresh(); }
$('line-down').addEventListener('click', () => setLine(false));
$('line-up').addEventListener('click', () => setLine(true));

async function loadPhones() {
  const phones = await api('GET', '/sim/phones');
  $('phones').replaceChildren(...phones.map((p) => {
    const li = el('li');
    const b = el('button', '📞'); b.type = 'button'; b.className = 'dial-resident';
    b.addEventListener('click', () => dial(p.number));
    li.append(b, ' ', el('span', p.name), ' ', el('span', p.number, 'muted'));
    return li;
  }));
}

async function act(ref, action, body) { try { await api('POST', `/sim/calls/${encodeURIComponent(ref)}/${action}`, body); } catch (err) { console.warn(err); } refresh(); }

function render(calls) {
  const tpl = $('call-tpl');
  $('sim-calls').replaceChildren(...calls.map((c) => {
    const node = tpl.content.firstElementChild.cloneNode(true);
    node.dataset.ref = c.ref; node.dataset.number = c.number; node.dataset.state = c.state;
    node.querySelector('.dir').textContent = T(c.direction === 'in' ? 'sim_in' : 'sim_out');
    node.querySelector('.number').textContent = c.number;
    node.querySelector('.state').textContent = T(`sim_st_${c.state}`) + (c.cause ? ` (${T(`cause_${c.cause}`)})` : '') + (c.peer && c.state !== 'ended' ? ` · ${c.peer}` : '');
    const ringing = c.state === 'ringing';
    node.querySelector('.answer').hidden = !ringing;
    node.querySelector('.busy').hidden = !ringing;
    node.querySelector('.hang').hidden = c.state === 'ended';
    node.querySelector('.speak').hidden = c.state === 'ended' || ringing || c.state === 'desk_ringing';
    node.querySelector('.answer').addEventListener('click', () => act(c.ref, 'answer'));
    node.querySelector('.busy').addEventListener('click', () => act(c.ref, 'reject', { reason: 'busy' }));
    node.querySelector('.hang').addEventListener('click', () => act(c.ref, 'hangup'));
    node.querySelector('.speak').addEventListener('click', () => act(c.ref, 'speak'));
    const keys = node.querySelector('.keys');
    for (const d of c.waiting_for) {
      const b = el('button', d, 'key'); b.type = 'button'; b.dataset.digit = d;
      b.addEventListener('click', () => act(c.ref, 'press', { digit: d }));
      keys.append(b);
    }
    node.querySelector('.transcript').replaceChildren(...c.transcript.map((line) => el('li', line)));
    return node;
  }));
}

// A text as the handset shows it: links tappable (built as nodes, never as HTML)
function smsText(text) {
  const span = el('span', null, 'sms');
  for (const part of text.split(/(https?:\/\/\S+)/)) {
    if (/^https?:\/\//.test(part)) { const a = el('a', part); a.href = part; a.target = '_blank'; a.rel = 'noreferrer'; span.append(a); }
    else if (part) span.append(part);
  }
  return span;
}

async function refresh() {
  render(await api('GET', '/sim/calls'));
  refreshPhoneLine();
  const messages = await api('GET', '/sim/messages');
  $('outbox').replaceChildren(...messages.map((m) => {
    const li = el('li'); li.dataset.ref = m.ref;
    li.append(el('b', m.to), ' ', smsText(m.text));
    return li;
  }));
}
await loadPhones();
await refresh();
setInterval(refresh, 700);
document.body.dataset.ready = '1';
