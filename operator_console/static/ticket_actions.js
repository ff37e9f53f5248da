// What an operator can do about a ticket, wherever it shows (its page, a row of the
// board): the same API calls, and the same rules about what the ticket's state allows.
// The server checks the roles (operators and supervisors) on every call.
import { api } from './common.js';

export const FINAL = ['closed', 'cancelled'];

// What the ticket's state allows now: dispatch again only when nobody has it; a closed
// ticket still takes notes; the resident can be rung when the ticket names one.
export function allowed(t) {
  const open = !FINAL.includes(t.state);
  return {
    redispatch: ['new', 'unassigned'].includes(t.state), cancel: open, assign: open,
    note: true, call: Boolean(t.resident_id),
  };
}

export const redispatch = (id) => api('POST', `/tickets/${id}/dispatch`, {});
export const addNote = (id, text) => api('POST', `/tickets/${id}/notes`, { text });
export const reassign = (id, userId) => api('POST', `/tickets/${id}/assign`, { user_id: userId });
export const cancelTicket = (id, reason) => api('POST', `/tickets/${id}/cancel`, { reason });
// a click-to-call by the phone's id: no number leaves the server; the desk rings first
export const callPhone = (phoneId) => api('POST', '/callouts', { target: 'resident_phone', id: phoneId });
export const phonesOf = (residentId) => api('GET', `/residents/${residentId}/phones`);
// whom a ticket can be handed to (and the names of who looks after one)
export const assignees = () => api('GET', '/assignees').catch(() => []);
