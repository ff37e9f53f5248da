import { api, T } from './common.js';
document.getElementById('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const error = document.getElementById('login-error');
  try {
    const res = await api('POST', '/login', { username: document.getElementById('username').value, password: document.getElementById('password').value });
    location.href = res.user.role === 'merchant' ? '/merchant' : '/';
  } catch (err) {
    // the server's words are English; the page says it in its own language
    const said = {
      401: () => T('login_wrong'),
      429: () => T('login_throttled', { s: err.data?.details?.retry_after_s ?? '' }),
      503: () => (err.data?.error_id === 'busy' ? T('login_busy') : err.message),
      403: () => T('login_other_site', { url: document.querySelector('meta[name="public-url"]')?.content || '' }),
    }[err.status];
    error.textContent = said ? said() : err.message;
    error.dataset.status = String(err.status || '');
  }
});
