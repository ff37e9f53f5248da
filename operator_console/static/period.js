// The period picker of the wallboard and the merchant scorecard: today, the last 7 or 30
// days, or two dates. The choice lives in the address (?days=7 or ?from=&to=) so a reload
// or a link to a scorecard keeps it; the server turns it into Asia/Shanghai local days.
import { T } from './common.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export function readPeriod(fallbackDays = 7) {
  const q = new URLSearchParams(location.search);
  const from = q.get('from'), to = q.get('to');
  if (from && to && DATE.test(from) && DATE.test(to)) return { from, to };
  const days = Number(q.get('days'));
  return { days: Number.isInteger(days) && days >= 1 && days <= 366 ? days : fallbackDays };
}

// The query string of a period for the API and for links.
export const periodQuery = (p) => (p.days ? `days=${p.days}` : `from=${p.from}&to=${p.to}`);

function remember(p) {
  const q = new URLSearchParams(location.search);
  for (const k of ['days', 'from', 'to']) q.delete(k);
  for (const [k, v] of new URLSearchParams(periodQuery(p))) q.set(k, v);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

// Wire the picker in `root` (templates/_period.html); `onChange(period)` runs on a choice.
// Returns {get, showRange(first, last)}.
export function periodPicker(root, onChange) {
  let current = readPeriod();
  const custom = root.querySelector('#period-custom');
  const customButton = root.querySelector('[data-custom]');
  const from = root.querySelector('#period-from'), to = root.querySelector('#period-to');
  const show = () => {
    for (const b of root.querySelectorAll('[data-days]')) {
      const on = Number(b.dataset.days) === current.days;
      b.classList.toggle('selected', on); b.setAttribute('aria-pressed', String(on));
    }
    const isCustom = !current.days || ![1, 7, 30].includes(current.days);
    customButton.classList.toggle('selected', isCustom && custom.hidden);
    customButton.setAttribute('aria-pressed', String(isCustom));
  };
  const choose = (p) => { current = p; remember(p); custom.hidden = true; customButton.setAttribute('aria-expanded', 'false'); show(); onChange(p); };
  for (const b of root.querySelectorAll('[data-days]')) b.addEventListener('click', () => choose({ days: Number(b.dataset.days) }));
  customButton.addEventListener('click', () => {
    custom.hidden = !custom.hidden;
    customButton.setAttribute('aria-expanded', String(!custom.hidden));
    if (!custom.hidden) from.focus();
  });
  root.querySelector('#period-apply').addEventListener('click', () => {
    if (!DATE.test(from.value) || !DATE.test(to.value) || from.value > to.value) {
      to.setCustomValidity(T('period_invalid')); to.reportValidity(); return;
    }
    to.setCustomValidity('');
    choose({ from: from.value, to: to.value });
  });
  show();
  return {
    get: () => current,
    showRange(first, last) {
      root.querySelector('#period-range').textContent = first === last ? first : T('period_range', { from: first, to: last });
      if (!from.value) from.value = first;
      if (!to.value) to.value = last;
    },
  };
}
