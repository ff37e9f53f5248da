// Shared helpers: API calls with the CSRF token, the live event stream with resume,
// the page's words, the text-size switch.
export const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
export const lang = () => document.querySelector('meta[name="lang"]').content;

const words = JSON.parse(document.getElementById('i18n')?.textContent || '{}');
// A word of the page in its language; `{n}` style placeholders are filled from `vars`.
export function T(key, vars) {
  let text = words[key] ?? key;
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
  return data;
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

const NAMES_ZH = { ringing: '振铃', ivr: '语音导航', queued: '排队中', connected: '通话中', wrap_up: '整理中', ended: '已结束', abandoned: '已放弃',
  new: '新建', matching: '匹配中', offering: '派单中', accepted: '已接单', in_service: '服务中', completed: '已完成', rated: '已评价', closed: '已办结', cancelled: '已取消', unassigned: '无人接单',
  placed: '呼叫中', answered: '已接通', declined: '已拒绝', no_answer: '未接听', busy: '占线', failed: '失败', expired: '超时', withdrawn: '已撤回',
  logged_out: '未登录', available: '空闲', reserved: '预留', on_call: '通话中', paused: '小休',
  on_hold: '保持中', consult_ringing: '咨询振铃', consulting: '咨询中',
  satisfied: '满意', basically_satisfied: '基本满意', not_satisfied: '不满意', routine: '一般', urgent: '紧急', emergency: '特急' };
export const stateName = (s) => (lang() === 'zh-CN' ? NAMES_ZH[s] : (s || '').replaceAll('_', ' ')) || s;

const EVENT_ZH = { 'booking.booked': '预约上门', 'booking.moved': '改预约时间', 'booking.cleared': '改为尽快', 'booking.confirmed': '商家确认预约', 'booking.merchant_cancelled': '商家取消预约', 'booking.released': '改时间，重新派单', 'offer.cancelled': '商家取消预约', 'booking.reminder_calling': '预约提醒外呼', 'booking.reminder_confirmed': '老人确认预约', 'booking.reminder_help': '老人要改约或取消', 'booking.reminder_missed': '预约提醒未接通', 'booking.reminder_unanswered': '预约提醒未应答', 'booking.merchant_reminder_calling': '提醒商家预约', 'booking.merchant_reminder_confirmed': '商家确认按时上门', 'booking.merchant_reminder_cancelled': '商家在提醒电话中取消', 'booking.merchant_reminder_missed': '商家提醒未接通',
  'ticket.created': '创建工单', 'ticket.matching': '开始匹配', 'ticket.offering': '派单中', 'offer.placed': '呼叫商家', 'offer.ringing': '商家振铃',
  'offer.answered': '商家接通', 'offer.accepted': '商家接单', 'offer.declined': '商家拒单', 'offer.no_answer': '商家未接', 'offer.busy': '商家占线', 'offer.failed': '呼叫失败',
  'offer.expired': '派单超时', 'offer.withdrawn': '撤回派单', 'ticket.accepted': '已接单', 'ticket.arrived': '已上门', 'ticket.completed': '服务完成', 'survey.calling': '回访外呼',
  'survey.retry': '回访重试', 'ticket.rated': '已评价', 'ticket.closed': '已办结', 'ticket.cancelled': '已取消', 'ticket.unassigned': '无人接单', 'ticket.escalated': '已升级',
  'ticket.note': '备注', 'ticket.assigned': '转派给',
  'call.identified': '登记来电老人', 'call.held': '来电保持', 'call.resumed': '恢复通话', 'call.transferred': '来电转接',
  'call.transfer_unanswered': '转接无人接听，回到排队', 'call.transfer_failed': '转接失败',
  'call.consult_started': '先咨询同事（来电保持）', 'call.consult_answered': '同事已接听咨询', 'call.consult_completed': '咨询后转接完成',
  'call.consult_cancelled': '取消咨询，来电回到原坐席', 'call.consult_failed': '咨询无人接听，来电回到原坐席',
  'offer.waiting': '等待电话线路恢复', 'offer.resumed': '线路恢复，重新呼叫商家', 'call.deferred': '外呼等待线路',
  'call.redialed': '线路恢复后外呼', 'call.lost': '线路中断，通话丢失', 'telephony.down': '电话线路中断', 'telephony.up': '电话线路恢复',
  // emergency (issue 14): the escalation's steps on the call's timeline
  'emergency.flagged': '紧急来电', 'emergency.ringing_all': '呼叫全部话务员', 'emergency.after_hours': '无人值班，直接呼叫值班电话',
  'emergency.overflow': '超时未接，转值班电话', 'emergency.responder_called': '呼叫', 'emergency.responder_failed': '未接通',
  'emergency.help_called': '呼叫紧急联系人', 'emergency.exhausted': '无人接听', 'emergency.dial_120': '来电人要求接通 120',
  'emergency.connected_120': '已接通 120', 'emergency.taken': '已有人接听', 'emergency.caller_left': '来电人挂机', 'alert.emergency': '紧急提醒',
  'call.callout': '话务员外呼', 'call.callout_placed': '紧急处置外呼', 'emergency.step': '处置步骤', 'callback.attempted': '回电未联系上',
  // the resident told who is coming (issue 16), the menu cut off by a restart (issue 19)
  'resident.calling': '致电老人告知接单', 'resident.told': '已告知老人接单商家', 'resident.heard': '老人已听完告知',
  'resident.hung_up': '老人中途挂断', 'resident.told_retry': '告知未接通，稍后重拨', 'resident.told_later': '夜间免打扰，早上再告知',
  'resident.not_reached': '告知未能联系上老人', 'resident.not_told': '无需再告知', 'call.order_cancel': '老人来电取消订单',
  'call.menu_lost': '菜单中断，转人工排队',
  // the family told (issue 16): each contact as their preferences say
  'family.told': '已告知家属', 'family.calling': '致电家属', 'family.deferred': '夜间免打扰，早上告知家属',
  'family.due': '待告知家属', 'family.texting': '发短信告知家属', 'family.not_reached': '未能告知家属',
  'family.heard': '家属已听完告知', 'family.not_told': '订单已结束，不再告知家属',
  // price and consent (issue 16)
  'ticket.consented': '老人已同意费用', 'ticket.awaiting_consent': '自费服务，等待老人同意费用',
  // masked calls between merchant and resident (issue 16): ids only, never a number
  'masked.started': '发起隐号通话', 'masked.connected': '商家与老人已接通', 'masked.ended': '隐号通话结束', 'masked.failed': '隐号通话未接通',
  // wellbeing calls (issue 15)
  'wellbeing.due': '到时关怀呼叫', 'wellbeing.calling': '关怀呼叫', 'wellbeing.checked_in': '已报平安', 'wellbeing.away': '外出不呼叫',
  'wellbeing.unanswered': '关怀呼叫未接', 'wellbeing.retry': '关怀呼叫重拨', 'wellbeing.missed': '未报平安', 'wellbeing.help': '老人求助',
  'wellbeing.contact_called': '呼叫亲友', 'wellbeing.contact_declined': '亲友未接手', 'wellbeing.taken': '亲友接手查看',
  'wellbeing.report_called': '回访亲友', 'wellbeing.reported': '亲友已回报', 'wellbeing.report_missed': '亲友未回报',
  'wellbeing.escalated': '转话务员紧急处理', 'wellbeing.closed': '关怀结束', 'wellbeing.no_phone': '无可拨号码',
  'wellbeing.hung_up_waiting': '老人等待中挂机', 'wellbeing.plan_set': '设置关怀呼叫',
  'wellbeing.away_by_keypad': '老人按键登记外出', 'wellbeing.back_by_keypad': '老人按键登记回家',
  // medication and appointment reminders (issue 15)
  'reminder.added': '添加提醒', 'reminder.changed': '修改提醒', 'reminder.deleted': '删除提醒', 'reminder.due': '到时提醒',
  'reminder.calling': '提醒呼叫', 'reminder.confirmed': '老人已确认提醒', 'reminder.help': '老人要求转人工或改时间',
  'reminder.unanswered': '提醒呼叫未接', 'reminder.retry': '提醒呼叫重拨', 'reminder.missed': '提醒未接通',
  'reminder.skipped': '提醒已过时，未呼叫', 'reminder.cancelled': '商家取消预约上门', 'reminder.no_phone': '无可拨号码' };
const FAMILY_ZH = { accepted: '接单', arrived: '上门', completed: '完成', late: '超时', no_show: '未上门', emergency: '紧急求助', text: '短信', call: '电话' };
// English reads the event's own name: 'offer.no_answer' -> 'Offer no answer'
const eventEn = (n) => { const t = n.replace('.', ' ').replaceAll('_', ' '); return t.charAt(0).toUpperCase() + t.slice(1); };
export const eventName = (n) => (lang() === 'zh-CN' ? EVENT_ZH[n] || n : eventEn(n));

// Who acted, in the page's language: the resident or a merchant by phone, else a username.
const ACTOR_ZH = { resident: '老人本人', merchant: '商家' };
const actorName = (a) => (lang() === 'zh-CN' ? ACTOR_ZH[a] || a : a);

// One timeline row: time, what happened, and who or what it is about.
export function timelineItem(ev, merchants = {}) {
  const li = el('li');
  li.dataset.name = ev.name;
  const d = ev.data || {};
  const who = d.merchant || merchants[d.merchant_id] || '';
  // a note (a ticket's, a transfer's) and whom a ticket or caller went to
  // a family notice: which contact (relation), about what, by text or call
  const family = ev.name.startsWith('family.') ? [d.who, FAMILY_ZH[d.about] && lang() === 'zh-CN' ? FAMILY_ZH[d.about] : d.about, FAMILY_ZH[d.by] && lang() === 'zh-CN' ? FAMILY_ZH[d.by] : d.by].filter(Boolean).join(' · ') : '';
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
