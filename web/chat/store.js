// Conversations kept in this browser (IndexedDB): the node stores nothing per user. A conversation is one
// record holding a tree of messages (each knows its parent), so an edited question or a regenerated answer
// is a new branch and the older one stays; `leaf` is the message whose branch is shown.

const DB_NAME = 'clawbot-chat';
const STORE = 'conversations';

let dbPromise;

function open() {
  dbPromise ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'id' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return dbPromise;
}

async function run(mode, action) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = action(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export const loadAll = () => run('readonly', (s) => s.getAll());
export const save = (conversation) => run('readwrite', (s) => s.put(conversation));
export const remove = (id) => run('readwrite', (s) => s.delete(id));

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

export function newConversation(settings = {}) {
  const now = Date.now();
  return {
    id: newId(),
    title: '',
    created: now,
    updated: now,
    model: settings.model ?? '',
    settings: { temperature: 0.7, max_tokens: 1024, system: '', ...settings.settings },
    messages: {},
    leaf: null,
  };
}

/** Adds a message under `parent` (null: the first) and shows its branch. */
export function addMessage(conversation, parent, fields) {
  const message = { id: newId(), parent, created: Date.now(), state: 'complete', content: '', ...fields };
  conversation.messages[message.id] = message;
  conversation.leaf = message.id;
  conversation.updated = message.created;
  return message;
}

/** The shown branch, oldest first. */
export function branch(conversation) {
  const path = [];
  for (let id = conversation.leaf; id; id = conversation.messages[id]?.parent ?? null) path.unshift(conversation.messages[id]);
  return path;
}

/** The messages that share `message`'s parent (its versions), oldest first. */
export function siblings(conversation, message) {
  return Object.values(conversation.messages)
    .filter((m) => m.parent === message.parent)
    .sort((a, b) => a.created - b.created);
}

/** Shows `message`'s branch down to its newest descendant. */
export function showBranch(conversation, message) {
  let at = message;
  for (;;) {
    const children = Object.values(conversation.messages).filter((m) => m.parent === at.id);
    if (children.length === 0) break;
    at = children.reduce((a, b) => (b.created > a.created ? b : a));
  }
  conversation.leaf = at.id;
}

/** Deletes a message that holds nothing (a request that failed before its first token). */
export function dropMessage(conversation, message) {
  delete conversation.messages[message.id];
  if (conversation.leaf === message.id) conversation.leaf = message.parent;
}

export function searchText(conversation) {
  return `${conversation.title}\n${Object.values(conversation.messages).map((m) => m.content).join('\n')}`.toLowerCase();
}
