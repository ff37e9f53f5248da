// Shared helpers: API calls with the CSRF token, the live event stream with resume.
export const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
export const lang = () => document.querySelector('meta[name="lang"]').content;

export async function api(method, path, body) {
  const opts = { method, headers: { 'X-CSRF-Token': csrf() }, credentials: 'same-origin' };
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const res = await fetch('/api/v1' + path, opts);
  const data = res.headers.get('content-type')?.includes('json') ? await res.json() : null;
  if (!res.ok) { const err = new Error(data?.message || res.statusText); err.status = res.status; err.data = data; throw err; }
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
export function liveEvents(onEvent, { since = 0 } = {}) {
  let last = since, delay = 500, socket = null;
  const banner = document.getElementById('offline');
  const connect = () => {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${proto}://${location.host}/api/v1/ws?since=${last}`);
    socket.onopen = () => { banner.hidden = true; delay = 500; document.body.dataset.live = 'on'; };
    socket.onmessage = (msg) => {
      const ev = JSON.parse(msg.data);
      if (ev.seq <= last) return;
      last = ev.seq;
      document.body.dataset.lastSeq = String(last);
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

const logout = document.getElementById('logout');
if (logout) logout.addEventListener('click', async () => { await api('POST', '/logout'); location.href = '/login'; });

export const fmtTime = (iso) => iso ? new Date(iso).toLocaleTimeString(lang(), { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '';
