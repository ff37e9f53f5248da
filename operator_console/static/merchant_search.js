// Find a merchant by name, pinyin or initials (GET /api/v1/merchants?q=) and list links to
// their scorecards; Enter opens the first. Used by the wallboard and the scorecard page.
import { api, el, T, notify } from './common.js';

export function merchantSearch(input, list, hrefFor) {
  let seq = 0, timer = 0, rows = [];
  const render = () => {
    list.replaceChildren(...rows.map((m) => {
      const li = el('li'); li.dataset.merchantId = m.id;
      const a = el('a', m.name); a.href = hrefFor(m.id);
      const kind = T(`kind_${m.kind}`) === `kind_${m.kind}` ? m.kind : T(`kind_${m.kind}`);
      li.append(a, ' ', el('span', kind, 'tag'), ' ', el('span', m.grid_code, 'muted small'));
      return li;
    }));
    if (!rows.length && input.value.trim()) list.append(el('li', T('no_match'), 'muted'));
  };
  const run = async () => {
    const q = input.value.trim(), mine = ++seq;
    if (!q) { rows = []; render(); return; }
    let found;
    try { found = await api('GET', `/merchants?q=${encodeURIComponent(q)}`); } catch (err) { notify(err.message); return; }
    if (mine !== seq) return; // a newer query is on its way
    rows = found.slice(0, 8);
    render();
  };
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 200); });
  input.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    clearTimeout(timer);
    run().then(() => { if (rows.length) location.href = hrefFor(rows[0].id); });
  });
  // links carry the period chosen now, so refresh them when it changes
  return { refresh: render };
}
