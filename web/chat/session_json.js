// A conversation as the JSON that `clawbot sessions export --format json` writes and `clawbot sessions
// import` reads (src/client/session_export.cpp): the branch on screen, oldest message first.
import { addMessage, branch, newConversation } from './store.js';

const ROLES = new Set(['system', 'user', 'assistant']);
const STATES = new Set(['complete', 'partial', 'interrupted', 'length']);

const iso = (ms) => new Date(ms).toISOString();

/** A session name the CLI's store takes: 1 to 100 bytes of UTF-8, no control characters, not digits only. */
export function sessionName(title, created) {
  let name = (title || '').replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  while (new TextEncoder().encode(name).length > 100) name = name.slice(0, -1);
  if (!name || /^\d+$/.test(name)) name = `web-${iso(created).slice(0, 16).replace(/[T:]/g, '-')}`;
  return name;
}

export function exportSession(conversation) {
  const messages = branch(conversation)
    .filter((m) => ROLES.has(m.role))
    .map((m) => {
      const item = { role: m.role, content: m.content, state: STATES.has(m.state) ? m.state : 'partial', created: iso(m.created) };
      if (m.stats?.ttft_ms !== undefined) item.ttft_ms = m.stats.ttft_ms;
      if (m.stats?.tokens_per_s !== undefined) item.tokens_per_s = m.stats.tokens_per_s;
      if (m.stats?.tokens !== undefined) item.tokens = m.stats.tokens;
      if (m.error) item.error = m.error;
      return item;
    });
  return {
    format: 'clawbot-session',
    version: 1,
    name: sessionName(conversation.title, conversation.created),
    model: conversation.model || '',
    system_prompt: conversation.settings.system || '',
    created: iso(conversation.created),
    updated: iso(conversation.updated),
    messages,
  };
}

/** A new conversation from an export; throws an Error naming what is wrong. */
export function importSession(data) {
  if (!data || typeof data !== 'object' || data.format !== 'clawbot-session')
    throw new Error('not a clawbot session: "format" must be "clawbot-session"');
  if (data.version !== 1) throw new Error(`session format version ${data.version} is not known here (1 is)`);
  if (!Array.isArray(data.messages)) throw new Error('"messages" must be an array');
  const time = (text) => (Number.isFinite(Date.parse(text)) ? Date.parse(text) : Date.now());
  const conversation = newConversation({ model: typeof data.model === 'string' ? data.model : '' });
  conversation.title = typeof data.name === 'string' ? data.name : '';
  conversation.settings.system = typeof data.system_prompt === 'string' ? data.system_prompt : '';
  conversation.created = time(data.created);
  let parent = null;
  data.messages.forEach((m, i) => {
    if (!m || !ROLES.has(m.role) || typeof m.content !== 'string')
      throw new Error(`messages[${i}]: "role" must be system, user or assistant and "content" a string`);
    const stats = {};
    for (const field of ['ttft_ms', 'tokens_per_s', 'tokens']) if (typeof m[field] === 'number') stats[field] = m[field];
    const message = addMessage(conversation, parent, {
      role: m.role, content: m.content, state: STATES.has(m.state) ? m.state : 'complete', stats,
      error: typeof m.error === 'string' ? m.error : '',
    });
    message.created = time(m.created);
    parent = message.id;
  });
  conversation.updated = time(data.updated);
  return conversation;
}
