// A call offered to me (my state `reserved`) rings until I take it, someone else does, or
// it rings out to the next operator: a generated tone (Web Audio: no sound file, nothing
// inline, so the Content-Security-Policy needs nothing more), the tab title flashing, a
// desktop notification where the browser allows it, and the seconds left to take it.
// The deadline is the server's (`offer_expires_at` of GET /operator/state, the queue's
// `ring:` timer), counted down on this page's clock with the offset between the two taken
// out. `data-ring-*` attributes on <body> say what really happened (a tone scheduled, a
// notification shown): headless browsers play no sound, tests read these.
import { T } from './common.js';

const $ = (id) => document.getElementById(id);
const baseTitle = document.title;
const TONE_EVERY_MS = 3000;
const ASKED = 'yijing-notify-asked';
const canNotify = 'Notification' in window;
let ringing = null; // { callId, deadline (this page's ms), name, timer, lastTone, note }
let audio = null;

// Browsers start audio only after a gesture on the page: the first click or key makes the
// context, so a call that comes later can ring.
function unlockAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === 'suspended') audio.resume();
  } catch (err) { console.warn('audio', err); }
}
document.addEventListener('pointerdown', unlockAudio, { once: true });
document.addEventListener('keydown', unlockAudio, { once: true });

// One ring: a phone's double burst of 440 + 480 Hz, quiet enough for a headset.
function tone() {
  try {
    unlockAudio();
    const t0 = audio.currentTime;
    for (const start of [0, 0.6]) {
      for (const hz of [440, 480]) {
        const osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = hz;
        gain.gain.setValueAtTime(0.12, t0 + start);
        gain.gain.setValueAtTime(0, t0 + start + 0.4);
        osc.connect(gain).connect(audio.destination);
        osc.start(t0 + start);
        osc.stop(t0 + start + 0.42);
      }
    }
    document.body.dataset.ringTones = String(Number(document.body.dataset.ringTones || 0) + 1);
  } catch (err) { console.warn('ring tone', err); }
}

// The desktop-alert switch: offered once, on a click of the operator's own (never asked
// unprompted, never again once answered or dismissed).
function showAsk() {
  const ask = $('notify-enable');
  if (ask) ask.hidden = !canNotify || Notification.permission !== 'default' || localStorage.getItem(ASKED) === '1';
}
$('notify-enable')?.addEventListener('click', async () => {
  localStorage.setItem(ASKED, '1');
  try { await Notification.requestPermission(); } catch (err) { console.warn('notification', err); }
  showAsk();
});
showAsk();

function desktopNote(callId, name, left) {
  if (!canNotify || Notification.permission !== 'granted') return null;
  try {
    const note = new Notification(T('ring_note_title'), { body: T('ring_note_body', { name, n: left }), tag: `yijing-call-${callId}` });
    note.onclick = () => { window.focus(); note.close(); };
    document.body.dataset.ringNotified = String(callId);
    return note;
  } catch (err) { console.warn('notification', err); return null; }
}

const secondsLeft = () => Math.max(0, Math.ceil((ringing.deadline - Date.now()) / 1000));

function beat() {
  if (!ringing) return;
  const left = secondsLeft();
  const count = $('ring-left');
  count.textContent = T('ring_left', { n: left });
  count.dataset.left = String(left);
  // the title flashes: the tab strip shows it even when another tab is in front
  const on = !document.title.startsWith('(');
  document.title = on ? `(${T('ring_title')} ${left}) ${baseTitle}` : baseTitle;
  if (left > 0 && Date.now() - ringing.lastTone >= TONE_EVERY_MS) { ringing.lastTone = Date.now(); tone(); }
}

// My state as the server gave it: reserved rings, anything else stops the ringing.
// `call`: the offered call's name and emergency, for the box and the notification.
export function ringFor(s, call) {
  if (s.state !== 'reserved' || !s.call_id || !s.offer_expires_at) { stopRinging(); return; }
  const deadline = Date.now() + (Date.parse(s.offer_expires_at) - Date.parse(s.at));
  const name = call?.resident_name || T('unregistered');
  if (ringing && ringing.callId === s.call_id) { ringing.deadline = deadline; return; }
  stopRinging();
  ringing = { callId: s.call_id, deadline, name, timer: null, lastTone: 0, note: null };
  const box = $('ring-box');
  box.hidden = false;
  box.dataset.callId = String(s.call_id);
  box.classList.toggle('emergency', Boolean(call?.emergency));
  $('ring-mark').hidden = !call?.emergency;
  $('ring-what').textContent = T('ring_offer', { id: s.call_id, name });
  document.body.dataset.ringing = String(s.call_id);
  ringing.note = desktopNote(s.call_id, name, secondsLeft());
  beat();
  ringing.timer = setInterval(beat, 1000);
}

export function stopRinging() {
  if (!ringing) return;
  clearInterval(ringing.timer);
  ringing.note?.close();
  ringing = null;
  document.title = baseTitle;
  $('ring-box').hidden = true;
  delete document.body.dataset.ringing;
}

export const ringingCall = () => ringing?.callId ?? null;
