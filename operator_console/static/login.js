import { api } from './common.js';
document.getElementById('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const error = document.getElementById('login-error');
  try {
    const res = await api('POST', '/login', { username: document.getElementById('username').value, password: document.getElementById('password').value });
    location.href = res.user.role === 'merchant' ? '/merchant' : '/';
  } catch (err) { error.textContent = err.message; }
});
