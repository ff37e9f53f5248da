// Shared helpers: API calls with the CSRF token, the live event stream with resume,
// the page's words, the text-size switch.
export const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
export const lang = () => document.querySelector('meta[name="lang"]').content;

// the page's words from the server's catalog (operator_console/locale/*/messages.po): a
// plural entry is the list of its forms, in gettext's order for the language
const words = JSON.parse(document.getElementById('i18n')?.textContent || '{}');
const plurals = new Intl.PluralRules(document.documentElement.lang || 'zh-CN');
// The form of a plural entry for the count `n`: gettext orders English's two forms as
// one/other, and Chinese has one form only.
const pluralForm = (forms, n) => forms[forms.length > 1 && plurals.select(Number(n)) !== 'one' ? 1 : 0];
// A word of the page in its language; `{n}` style placeholders are filled from `vars`, and
// a counted word ("1 visit", "2 visits") takes the form of `vars.n`.
export function T(key, vars) {
  let text = words[key] ?? key;
  if (Array.isArray(text)) text = pluralForm(text, vars?.n ?? 0);
  for (const [k, v] of Object.entries(vars || {})) text = text.replace(`{${k}}`, String(v));
  return text;
}

const known = (key) => Object.prototype.hasOwnProperty.call(words, key);

// One field at fault of an API error, in the page's words: its machine code `type`
// (pydantic's, or the domain's) looked up as `e_<type>` with the numbers of its `ctx`;
// the server's English message only for a code the catalog does not know.
export function fieldErrorText(detail) {
  const key = `e_${detail?.type}`;
  return detail?.type && known(key) ? T(key, detail.ctx) : String(detail?.message ?? '');
}

// A whole API error answer (`{error_id, message, details}`) in the page's words: `e_<error_id>`,
// with the first field at fault when there is one; the English message beside a code the
// catalog does not know or one too general to say what happened.
export function errorText(data) {
  const key = `e_${data?.error_id}`;
  const details = data?.details;
  const vars = details && !Array.isArray(details) ? details : {};
  if (!known(key)) return String(data?.message ?? '');
  const text = T(key, vars);
  if (Array.isArray(details) && details.length) return `${text}: ${fieldErrorText(details[0])}`;
  const general = ['invalid_input', 'conflict', 'illegal_transition'].includes(data.error_id);
  return general && data.message ? `${text} (${data.message})` : text;
}

export async function api(method, path, body) {
  return (await apiWithHeaders(method, path, body))[0];
}

// The same, with the answer's headers: [data, headers].
export async function apiWithHeaders(method, path, body) {
  const opts = { method, headers: { 'X-CSRF-Token': csrf() }, credentials: 'same-origin' };
  if (body instanceof FormData) { opts.body = body; }
  else if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const res = await fetch('/api/v1' + path, opts);
  const data = res.headers.get('content-type')?.includes('json') ? await res.json() : null;
  if (!res.ok) {
    // the message in the page's language, from the answer's machine codes (the English
    // one the server wrote stays in `err.english`)
    const err = new Error(data?.error_id ? errorText(data) : res.statusText);
    err.status = res.status; err.data = data; err.english = data?.message;
    // a route that does not exist answers 404/405 without our JSON error shape
    err.missing = (res.status === 404 || res.status === 405) && !data?.error_id;
    throw err;
  }
  return [data, res.headers];
}

export function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

// Subscribe to the event log. Resumes from the last seq after a drop and shows a banner
// while offline.
export function liveEvents(onEvent, { since = 0, onReconnect } = {}) {
  let last = since, delay = 500, socket = null, opened = false;
  const banner = document.getElementById('offline');
  const connect = () => {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${proto}://${location.host}/api/v1/ws?since=${last}`);
    window.yijingSocket = socket;
    socket.onopen = () => {
      banner.hidden = true; delay = 500; document.body.dataset.live = 'on';
      refreshPhoneLine();
      if (opened && onReconnect) onReconnect();
      opened = true;
    };
    socket.onmessage = (msg) => {
      const ev = JSON.parse(msg.data);
      if (ev.seq <= last) return;
      last = ev.seq;
      document.body.dataset.lastSeq = String(last);
      phoneLineEvent(ev);
      onEvent(ev);
    };
    socket.onclose = () => {
      banner.hidden = false; document.body.dataset.live = 'off';
      setTimeout(connect, delay); delay = Math.min(delay * 2, 8000);
    };
  };
  connect();
  return { close: () => { socket.onclose = null; socket.close(); } };
}

// The highest seq in the log now, so a page starts live from here.
export async function latestSeq() {
  return (await api('GET', '/events/latest')).seq;
}

const logout = document.getElementById('logout');
// A page may hold the logout back (the desk, with a caller on the line): `yijing:logout`
// is cancelable. The server signs the desk off, or refuses while a caller is at it.
if (logout) logout.addEventListener('click', async () => {
  if (!document.dispatchEvent(new CustomEvent('yijing:logout', { cancelable: true }))) return;
  try { await api('POST', '/logout'); } catch (err) { notify(err.message); return; }
  location.href = location.pathname === '/merchant' ? '/merchant' : '/login';
});

for (const b of document.querySelectorAll('.sizes button')) {
  b.addEventListener('click', () => { document.documentElement.dataset.size = b.dataset.size; localStorage.setItem('yijing-size', b.dataset.size); });
}

export const fmtTime = (iso) => iso ? new Date(iso).toLocaleTimeString(lang(), { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '';
export const fmtDateTime = (iso) => iso ? new Date(iso).toLocaleString(lang(), { timeZone: 'Asia/Shanghai', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' }) : '';

// "1:05:09" style duration from seconds.
export function fmtDuration(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, '0'), ss = String(sec).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

// A deadline as a countdown and a level: ok, amber (under a quarter of the time or 15
// minutes left), red (overdue).
export function deadline(iso, totalMinutes) {
  if (!iso) return { text: '—', level: '' };
  const left = (new Date(iso) - Date.now()) / 1000;
  if (left < 0) return { text: `${T('overdue')} ${fmtDuration(-left)}`, level: 'red' };
  const warn = Math.min(15 * 60, (totalMinutes || 60) * 60 / 4);
  return { text: `${T('left')} ${fmtDuration(left)}`, level: left <= warn ? 'amber' : 'ok' };
}

// states, events, family notices and actors are worded by the catalog: st_<state>,
// ev_<event name with its first `.` as `_`>, fam_<about or by>, actor_<who>
export const stateName = (s) => (s && known(`st_${s}`) ? T(`st_${s}`) : lang() === 'zh-CN' ? s : (s || '').replaceAll('_', ' '));

const familyWord = (x) => (x && known(`fam_${x}`) ? T(`fam_${x}`) : x);
// English reads the event's own name: 'offer.no_answer' -> 'Offer no answer'
const eventEn = (n) => { const t = n.replace('.', ' ').replaceAll('_', ' '); return t.charAt(0).toUpperCase() + t.slice(1); };
// an event the catalog has no words for: its own name in English, as sent in Chinese
export const eventName = (n) => {
  const key = `ev_${n.replace('.', '_')}`;
  return known(key) ? T(key) : lang() === 'zh-CN' ? n : eventEn(n);
};

// Who acted, in the page's language: the resident or a merchant by phone, else a username.
const actorName = (a) => (known(`actor_${a}`) ? T(`actor_${a}`) : a);

// One timeline row: time, what happened, and who or what it is about.
export function timelineItem(ev, merchants = {}) {
  const li = el('li');
  li.dataset.name = ev.name;
  const d = ev.data || {};
  const who = d.merchant || merchants[d.merchant_id] || '';
  // a note (a ticket's, a transfer's) and whom a ticket or caller went to
  // a family notice: which contact (relation), about what, by text or call
  const family = ev.name.startsWith('family.') ? [d.who, familyWord(d.about), familyWord(d.by)].filter(Boolean).join(' · ') : '';
  const extra = [family, who, d.rating ? stateName(d.rating) : '', d.reason || '', d.disposition || '', d.to_operator || '', d.who || '', d.note || ''].filter(Boolean).join(' ');
  li.append(el('span', fmtTime(ev.occurred_at), 'muted'), ' ', el('b', eventName(ev.name)), ' ', el('span', extra), ' ', el('span', ev.actor && ev.actor !== 'system' ? `(${actorName(ev.actor)})` : '', 'muted'));
  return li;
}

// A calm message in the corner instead of a blocking alert().
// The emergency alarm: three short high beeps (Web Audio; no sound file, nothing inline).
// Browsers start audio only after a first click on the page, which every console has had.
let audio = null;
export function alarm() {
  try {
    audio = audio || new AudioContext();
    const t0 = audio.currentTime;
    for (let i = 0; i < 3; i += 1) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.3, t0 + i * 0.35);
      gain.gain.setValueAtTime(0, t0 + i * 0.35 + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0 + i * 0.35);
      osc.stop(t0 + i * 0.35 + 0.22);
    }
    document.body.dataset.alarms = String(Number(document.body.dataset.alarms || 0) + 1);
  } catch (err) { console.warn('alarm', err); }
}

// An `alert.emergency` event: a toast and the alarm (console and wallboard).
export function emergencyAlert(ev) {
  const why = T(`emergency_why_${ev.data?.why || 'emergency_call'}`);
  notify(T('emergency_alert', { id: ev.subject_id, why }), 'error');
  alarm();
}

export function notify(message, level = 'error') {
  let box = document.getElementById('toast');
  if (!box) { box = el('div', null, 'toast'); box.id = 'toast'; box.setAttribute('role', 'alert'); document.body.append(box); }
  const item = el('div', message, `toast-item ${level}`);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

// resident groups and sex are stored as the registry's Chinese words; show them in the page's language
const GROUP_KEYS = { '孤寡': 'grp_alone', '空巢': 'grp_empty_nest', '残疾': 'grp_disabled' };
export const groupName = (g) => (GROUP_KEYS[g] ? T(GROUP_KEYS[g]) : g);
export const sexName = (s) => ({ '男': T('male'), '女': T('female') }[s] ?? s);

// The phone-line banner: shown while the telephony backend is down. The page starts from
// GET /telephony (as of its `seq`) and follows telephony.up / telephony.down events from
// the live stream; whichever is newer wins, so the two never disagree.
const outage = document.getElementById('phone-outage');
let lineSeq = -1;
function showLine(up, since) {
  if (!outage) return;
  outage.hidden = up;
  outage.dataset.line = up ? 'up' : 'down';
  outage.querySelector('.since').textContent = !up && since ? T('phone_outage_since', { time: fmtTime(since) }) : '';
}
export async function refreshPhoneLine() {
  if (!outage) return;
  try {
    const s = await api('GET', '/telephony');
    if (s.seq >= lineSeq) { lineSeq = s.seq; showLine(s.up, s.since); }
  } catch (err) { /* offline: the connection banner says so */ }
}
function phoneLineEvent(ev) {
  if (ev.name !== 'telephony.up' && ev.name !== 'telephony.down') return;
  if (ev.seq <= lineSeq) return;
  lineSeq = ev.seq;
  showLine(ev.name === 'telephony.up', ev.occurred_at);
}
refreshPhoneLine();
