// The chat of `clawbot serve` and `clawbot gateway` (GET /): conversations kept in this browser (IndexedDB),
// answers streamed from /v1/chat/completions, the CLI's writing and code prompts from /v1/clawbot/prompts.
// Bundled by esbuild (web/build.mjs) and compiled into the binary: nothing is loaded from anywhere else.
import './chat.css';

import { HttpError, NeedKey, getJson, postJson } from '../shared/api.js';
import { keyBox } from '../shared/key_box.js';
import { handleCopy, renderMarkdown, splitThinking } from './render.js';
import { exportSession, importSession, sessionName } from './session_json.js';
import * as store from './store.js';
import { StreamBroken, streamChat } from './stream.js';

const $ = (id) => document.getElementById(id);

const conversations = new Map();  // id → conversation (all of IndexedDB's, in memory)
let current = null;               // the conversation on screen (saved once it has a message)
let streaming = null;             // { controller, conversation, message }
let models = [];
const contexts = new Map();  // model → tokens a request may use (serve's /v1/models says), when known
let askKey;
let modelsTimer = 0;

// ------------------------------------------------------------------------------------------- small things

function setStatus(text) {
  $('status').textContent = text;
}

function notice(text, { retry = null } = {}) {
  const box = $('notice');
  box.replaceChildren();
  box.hidden = !text;
  if (!text) return;
  const p = document.createElement('p');
  p.textContent = text;
  box.append(p);
  if (retry) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Retry';
    button.addEventListener('click', retry);
    box.append(button);
  }
}

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label, action, aria) {
  const b = element('button', '', label);
  b.type = 'button';
  b.dataset.action = action;
  if (aria) b.setAttribute('aria-label', aria);
  return b;
}

let saveTimer = 0;
async function persist(conversation, { soon = false } = {}) {
  if (Object.keys(conversation.messages).length === 0) return;  // an empty new chat is not kept
  conversations.set(conversation.id, conversation);
  if (soon) {
    // While an answer streams: at most one write a second.
    if (!saveTimer) saveTimer = setTimeout(() => { saveTimer = 0; store.save(conversation); }, 1000);
    return;
  }
  clearTimeout(saveTimer);
  saveTimer = 0;
  await store.save(conversation);
}

// --------------------------------------------------------------------------------------- the conversation

function statsLine(m) {
  const s = m.stats ?? {};
  const parts = [];
  if (s.tokens !== undefined) parts.push(`${s.tokens} tokens`);
  if (s.tokens_per_s !== undefined) parts.push(`${s.tokens_per_s.toFixed(1)} tokens/s`);
  if (s.cached_tokens !== undefined) parts.push(`${s.cached_tokens} cached`);
  if (s.ttft_ms !== undefined) parts.push(`first token ${Math.round(s.ttft_ms)} ms`);
  if (s.upstream) parts.push(`answered by ${s.upstream}`);
  return parts.join(' · ');
}

function fillBody(article, m) {
  const body = article.querySelector('.body');
  if (m.role === 'user') {
    body.textContent = m.content;  // what the user typed, as typed
    return;
  }
  const { reasoning: inline, answer } = splitThinking(m.content);
  const reasoning = [m.reasoning, inline].filter(Boolean).join('\n\n');
  const details = article.querySelector('details.reasoning');
  details.hidden = !reasoning;
  if (reasoning) {
    details.querySelector('summary').textContent = `Reasoning (${reasoning.split(/\s+/).length} words)`;
    details.querySelector('.reasoning-body').replaceChildren(renderMarkdown(reasoning));
  }
  body.replaceChildren(renderMarkdown(answer));
  if (!answer && m.state === 'partial' && !m.error) body.textContent = '…';
}

function fillMeta(article, m) {
  article.dataset.state = m.state;
  article.querySelector('.meta').textContent = statsLine(m);
  const error = article.querySelector('.error');
  const stateText = { interrupted: 'Stopped', length: 'Cut at the length limit (max tokens)' }[m.state];
  error.hidden = !(m.error || stateText);
  error.textContent = m.error ? `${m.state === 'interrupted' ? 'Stopped' : 'Not finished'}: ${m.error}` : stateText ?? '';
}

// One source under an answer, as `clawbot kb ask` prints it: "[1] returns.md — Shop policy § Returns > Gift cards
// (line 5)": the document (a path's file name; a URL whole), its title when it has another, where in it.
function citationText(c) {
  const source = c.source ?? '';
  const name = /^[a-z]+:\/\//i.test(source) ? source : source.split(/[\\/]/).pop();
  let text = `[${c.index ?? '?'}] ${name || c.title || ''}`;
  if (c.title && name && c.title !== name) text += ` — ${c.title}`;
  if (c.heading_path) text += ` § ${c.heading_path}`;
  if (c.location) text += ` (${c.location})`;
  return text;
}

// Citations (a knowledge base's answer, model kb:NAME on a node with --kb): the passages [1], [2]... under it.
function fillCitations(article, m) {
  const list = article.querySelector('.citations');
  list.hidden = !m.citations?.length;
  list.replaceChildren(...(m.citations ?? []).map((c) => {
    const item = element('li', '', citationText(c));
    if (c.source) item.title = c.source;
    return item;
  }));
}

function messageElement(conversation, m) {
  const article = element('article', `msg ${m.role}`);
  article.dataset.id = m.id;
  const who = element('h2', 'who', m.role === 'user' ? 'You' : m.role === 'assistant' ? 'Assistant' : 'System');
  if (m.task) who.append(' ', element('span', 'task', m.task));
  article.setAttribute('aria-label', who.textContent);
  const details = element('details', 'reasoning');
  details.append(element('summary', '', 'Reasoning'), element('div', 'reasoning-body'));
  details.hidden = true;
  const citations = element('ul', 'citations');
  citations.setAttribute('aria-label', 'Sources');
  article.append(who, details, element('div', 'body'), citations, element('p', 'error'), element('p', 'meta'));
  const actions = element('div', 'actions');
  const versions = store.siblings(conversation, m);
  if (versions.length > 1) {
    const at = versions.indexOf(m);
    const nav = element('span', 'versions');
    const prev = button('‹', 'prev', 'Previous version');
    const next = button('›', 'next', 'Next version');
    prev.disabled = at === 0;
    next.disabled = at === versions.length - 1;
    nav.append(prev, element('span', 'version', `${at + 1}/${versions.length}`), next);
    actions.append(nav);
  }
  if (m.role === 'user') actions.append(button('Edit', 'edit', 'Edit this message'));
  if (m.role === 'assistant') {
    if (m.state === 'partial' && m.error) actions.append(button('Retry', 'retry', 'Retry this answer'));
    actions.append(button('Regenerate', 'regenerate', 'Regenerate this answer'));
  }
  actions.append(button('Copy', 'copy', 'Copy this message'));
  article.append(actions);
  fillBody(article, m);
  fillMeta(article, m);
  fillCitations(article, m);
  return article;
}

function nearBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function renderConversation() {
  const follow = nearBottom();
  $('title').textContent = current.title || 'New chat';
  const path = store.branch(current);
  $('messages').replaceChildren(...path.map((m) => messageElement(current, m)));
  if (path.length === 0) $('messages').append(element('p', 'empty', 'Ask anything. Your conversations stay in this browser.'));
  if (models.length && current.model && !models.includes(current.model)) current.model = models[0];
  $('model').value = current.model || models[0] || '';
  $('temperature').value = current.settings.temperature;
  $('max-tokens').value = current.settings.max_tokens;
  $('system-prompt').value = current.settings.system;
  if (follow) $('messages').scrollTop = $('messages').scrollHeight;
  renderList();
}

let renderQueued = null;
function renderStreaming(m) {
  // At most one redraw a frame: a fast model on a slow phone still leaves the page responsive.
  if (renderQueued) return;
  renderQueued = requestAnimationFrame(() => {
    renderQueued = null;
    const article = $('messages').querySelector(`article[data-id="${m.id}"]`);
    if (!article) return;
    const follow = nearBottom();
    fillBody(article, m);
    fillMeta(article, m);
    if (follow) $('messages').scrollTop = $('messages').scrollHeight;
  });
}

// --------------------------------------------------------------------------------------------- the list

function renderList() {
  const query = $('search').value.trim().toLowerCase();
  const items = [...conversations.values()]
    .filter((c) => !query || store.searchText(c).includes(query))
    .sort((a, b) => b.updated - a.updated)
    .map((c) => {
      const li = element('li');
      li.dataset.id = c.id;
      const open = button(c.title || 'New chat', 'open');
      open.className = 'open';
      if (current && c.id === current.id) open.setAttribute('aria-current', 'true');
      li.append(open, button('✎', 'rename', `Rename ${c.title || 'this chat'}`), button('✕', 'delete', `Delete ${c.title || 'this chat'}`));
      return li;
    });
  if (items.length === 0) items.push(element('li', 'none', query ? 'No conversation matches.' : 'No conversations yet.'));
  $('conversation-list').replaceChildren(...items);
}

function openConversation(conversation) {
  if (streaming && streaming.conversation !== conversation) stop();
  current = conversation;
  notice('');
  renderConversation();
  document.body.classList.remove('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', 'false');
}

function newChat() {
  const previous = current;
  openConversation(store.newConversation({ model: $('model').value, settings: previous ? { ...previous.settings } : {} }));
  $('composer-input').focus();
}

function startRename(li, conversation) {
  const input = element('input', 'rename');
  input.value = conversation.title;
  input.setAttribute('aria-label', 'New name');
  li.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (keep) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (keep && title) {
      conversation.title = title;
      await persist(conversation);
    }
    if (current === conversation) $('title').textContent = conversation.title || 'New chat';
    renderList();
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') finish(true);
    if (e.key === 'Escape') {
      e.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener('blur', () => finish(true));
}

async function onListClick(event) {
  const target = event.target.closest('button[data-action]');
  if (!target) return;
  const li = target.closest('li');
  const conversation = conversations.get(li.dataset.id);
  if (!conversation) return;
  if (target.dataset.action === 'open') openConversation(conversation);
  if (target.dataset.action === 'rename') startRename(li, conversation);
  if (target.dataset.action === 'delete') {
    // Asked in place (no dialog): a second press deletes.
    if (target.dataset.confirm !== 'yes') {
      target.dataset.confirm = 'yes';
      target.textContent = 'Delete?';
      target.addEventListener('blur', () => renderList(), { once: true });
      return;
    }
    if (streaming?.conversation === conversation) stop();
    conversations.delete(conversation.id);
    await store.remove(conversation.id);
    if (current === conversation) newChat();
    else renderList();
    setStatus(`Deleted ${conversation.title || 'the chat'}`);
  }
}

// ---------------------------------------------------------------------------------------------- answers

function requestMessages(conversation, user) {
  if (user.request) return user.request;  // a writing or code task: the CLI's prompt, on its own
  const messages = [];
  if (conversation.settings.system) messages.push({ role: 'system', content: conversation.settings.system });
  for (const m of store.branch(conversation)) {
    if (m.role === 'assistant' && (m.state === 'partial' || !m.content)) continue;
    messages.push({ role: m.role, content: m.role === 'assistant' ? splitThinking(m.content).answer : m.content });
    if (m.id === user.id) break;
  }
  return messages;
}

// max_tokens is a ceiling, as for the CLI: never more than the model's context leaves after the prompt (its
// tokens estimated at 3 bytes each, on the safe side).
function fitAnswer(model, messages, maxTokens) {
  const context = contexts.get(model);
  if (!context) return maxTokens;
  const bytes = messages.reduce((n, m) => n + new TextEncoder().encode(m.content).length, 0);
  const prompt = Math.ceil(bytes / 3) + 4 * messages.length;
  return Math.max(16, Math.min(maxTokens, context - prompt));
}

async function answer(conversation, user) {
  const model = $('model').value || conversation.model || '';
  const m = store.addMessage(conversation, user.id, { role: 'assistant', content: '', reasoning: '', state: 'partial', model });
  const controller = new AbortController();
  streaming = { controller, conversation, message: m };
  document.body.dataset.streaming = 'true';
  $('send').hidden = true;
  $('stop').hidden = false;
  notice('');
  setStatus('Answering…');
  renderConversation();
  const request = { model, messages: requestMessages(conversation, user) };
  const temperature = Number(conversation.settings.temperature);
  const maxTokens = Number(conversation.settings.max_tokens);
  if (Number.isFinite(temperature)) request.temperature = temperature;
  if (maxTokens > 0) request.max_tokens = fitAnswer(model, request.messages, maxTokens);
  try {
    const result = await streamChat(request, {
      signal: controller.signal,
      onStart: ({ upstream }) => showUpstream(upstream),
      onDelta: ({ content, reasoning }) => {
        m.content += content;
        m.reasoning += reasoning;
        renderStreaming(m);
        persist(conversation, { soon: true });
      },
    });
    m.state = result.finish === 'length' ? 'length' : 'complete';
    const tokens = result.usage?.completion_tokens;
    const speed = result.timings?.predicted_per_second
      // (else measured here, when the answer took long enough to measure)
      || (tokens > 1 && result.decodeMs >= 100 ? ((tokens - 1) * 1000) / result.decodeMs : undefined);
    const cached = result.usage?.prompt_tokens_details?.cached_tokens ?? result.timings?.cache_n;
    m.stats = {};
    if (tokens !== undefined) m.stats.tokens = tokens;
    if (speed) m.stats.tokens_per_s = speed;
    if (cached !== undefined) m.stats.cached_tokens = cached;
    if (result.ttftMs !== undefined) m.stats.ttft_ms = result.ttftMs;
    if (result.upstream) m.stats.upstream = result.upstream;
    if (result.citations?.length) m.citations = result.citations;
    setStatus(`Answer complete${tokens !== undefined ? ` (${tokens} tokens)` : ''}`);
  } catch (e) {
    failed(conversation, m, e);
  } finally {
    streaming = null;
    delete document.body.dataset.streaming;
    $('send').hidden = false;
    $('stop').hidden = true;
    await persist(conversation);
    if (current === conversation) renderConversation();
  }
}

function failed(conversation, m, e) {
  const retry = () => retryAnswer(conversation, m);
  if (e.name === 'AbortError') {
    m.state = 'interrupted';
    m.error = 'stopped by the user';
    setStatus('Stopped');
    return;
  }
  m.state = 'partial';
  if (e instanceof NeedKey) {
    m.error = e.hadKey ? `the key was refused (${e.message})` : 'this gateway needs an API key';
    askForKey(e);
    setStatus('Waiting for an API key');
    return;
  }
  if (e instanceof HttpError) {
    m.error = e.explanation;
    notice(e.explanation, { retry: e.retryable ? retry : null });
  } else if (e instanceof StreamBroken) {
    m.error = `${e.message}. ${m.content ? 'What arrived is kept; ' : ''}Retry when the server is back.`;
    notice(`${m.content ? 'The answer was cut off' : 'No answer'}: ${e.message}.`, { retry });
  } else {
    m.error = e.message;
    notice(`The answer failed: ${e.message}`, { retry });
  }
  setStatus('The answer failed');
}

/** A failed answer again: one that holds nothing is replaced, a partial one stays as an older version. */
async function retryAnswer(conversation, m) {
  if (streaming) return;
  const user = conversation.messages[m.parent];
  if (!user) return;
  if (!m.content && !m.reasoning) store.dropMessage(conversation, m);
  await answer(conversation, user);
}

function stop() {
  streaming?.controller.abort();
}

function showUpstream(upstream) {
  $('upstream').hidden = !upstream;
  $('upstream').textContent = upstream ? `answered by ${upstream}` : '';
}

async function send() {
  const input = $('composer-input');
  const text = input.value;
  if (streaming || !text.trim()) return;
  await ask(text, {});
  input.value = '';
}

async function ask(content, fields) {
  const conversation = current;
  if (!conversation.title) conversation.title = content.trim().split('\n')[0].slice(0, 60);
  if (!conversation.model) conversation.model = $('model').value;
  const user = store.addMessage(conversation, conversation.leaf, { role: 'user', content, ...fields });
  await persist(conversation);
  await answer(conversation, user);
}

// ------------------------------------------------------------------------------------- message actions

function startEdit(article, m) {
  const body = article.querySelector('.body');
  const editor = element('textarea', 'edit');
  editor.value = m.content;
  editor.rows = Math.min(12, m.content.split('\n').length + 1);
  editor.setAttribute('aria-label', 'Edit your message');
  const save = button('Save and send', 'edit-save');
  const cancel = button('Cancel', 'edit-cancel');
  const bar = element('div', 'edit-bar');
  bar.append(save, cancel);
  body.replaceChildren(editor, bar);
  editor.focus();
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save.click();
    } else if (e.key === 'Escape') {
      e.stopPropagation();
      cancel.click();
    }
  });
}

async function onMessagesClick(event) {
  if (handleCopy(event)) return;
  const target = event.target.closest('button[data-action]');
  if (!target) return;
  const article = target.closest('article');
  const m = current.messages[article.dataset.id];
  if (!m) return;
  const action = target.dataset.action;
  if (action === 'prev' || action === 'next') {
    const versions = store.siblings(current, m);
    const other = versions[versions.indexOf(m) + (action === 'prev' ? -1 : 1)];
    if (other) {
      store.showBranch(current, other);
      renderConversation();
      $('messages').querySelector(`article[data-id="${other.id}"] button[data-action="${action}"]`)?.focus();
      await persist(current);
    }
  } else if (action === 'edit') {
    if (!streaming) startEdit(article, m);
  } else if (action === 'edit-cancel') {
    renderConversation();
  } else if (action === 'edit-save') {
    const content = article.querySelector('textarea.edit').value;
    if (!content.trim() || streaming) return;
    // A new version of the question beside the old one (its answers stay on the older branch).
    const user = store.addMessage(current, m.parent, { role: 'user', content });
    await persist(current);
    await answer(current, user);
  } else if (action === 'regenerate' && !streaming) {
    await answer(current, current.messages[m.parent]);
  } else if (action === 'retry') {
    await retryAnswer(current, m);
  } else if (action === 'copy') {
    navigator.clipboard?.writeText(m.content).then(() => setStatus('Copied'), () => setStatus('Copy failed'));
  }
}

// ------------------------------------------------------------------------------ writing and code modes

async function loadPrompts() {
  try {
    const prompts = await getJson('/v1/clawbot/prompts');
    const add = (group, task) => {
      const b = button(task.name, 'task');
      b.dataset.task = task.name;
      b.title = task.description;
      b.setAttribute('aria-label', `${task.name}: ${task.description}`);
      group.append(b);
    };
    $('writing-modes').replaceChildren();
    $('code-modes').replaceChildren();
    for (const task of prompts.writing ?? []) add($('writing-modes'), task);
    for (const task of prompts.code ?? []) add($('code-modes'), task);
    $('modes').hidden = false;
  } catch (e) {
    $('modes').hidden = true;  // a server without the route (or no key yet): plain chat
    if (e instanceof NeedKey) throw e;
  }
}

async function runTask(task) {
  if (streaming) return;
  const input = $('composer-input');
  const selected = input.value.slice(input.selectionStart, input.selectionEnd);
  const text = selected.trim() ? selected : input.value;
  if (!text.trim()) {
    notice('Write or paste the text (or code) first: the task works on the selection, or on the whole draft.');
    input.focus();
    return;
  }
  try {
    const prompt = await postJson('/v1/clawbot/prompts', {
      task, text, language: $('translate-to').value || 'English', file_name: $('code-file').value || 'snippet.txt',
    });
    input.value = selected.trim() ? input.value.slice(0, input.selectionStart) + input.value.slice(input.selectionEnd) : '';
    await ask(text, { task, request: prompt.messages });
  } catch (e) {
    if (e instanceof NeedKey) askForKey(e);
    else notice(e instanceof HttpError ? e.explanation : e.message);
  }
}

// ------------------------------------------------------------------------------------ models and keys

function askForKey(error) {
  document.body.dataset.state = 'need-key';
  askKey(error, 'This gateway needs an API key: ask its operator for one.');
}

async function loadModels() {
  clearTimeout(modelsTimer);
  try {
    const list = await getJson('/v1/models');
    models = (list.data ?? []).map((m) => m.id).filter((id) => typeof id === 'string');
    for (const m of list.data ?? []) {
      const n = m.meta?.n_ctx_per_request ?? m.context_length;
      if (typeof m.id === 'string' && n > 0) contexts.set(m.id, n);
    }
    const select = $('model');
    select.replaceChildren(...models.map((id) => {
      const option = element('option', '', id);
      option.value = id;
      return option;
    }));
    select.disabled = models.length === 0;
    if (current) select.value = models.includes(current.model) ? current.model : models[0] ?? '';
    await loadPrompts();
    document.body.dataset.state = 'ready';
    if ($('notice').dataset.kind === 'offline') notice('');
    delete $('notice').dataset.kind;
  } catch (e) {
    if (e instanceof NeedKey) {
      askForKey(e);
      return;
    }
    // The node may be restarting: try again, the page keeps working when it is back.
    notice(`Cannot read the models: ${e instanceof HttpError ? e.explanation : `the server does not answer (${e.message})`}. Trying again.`);
    $('notice').dataset.kind = 'offline';
    document.body.dataset.state = 'offline';
    modelsTimer = setTimeout(loadModels, 3000);
  }
}

// -------------------------------------------------------------------------------------- import, export

function exportCurrent() {
  if (!current || Object.keys(current.messages).length === 0) {
    notice('Nothing to export yet.');
    return;
  }
  const data = exportSession(current);
  const blob = new Blob([`${JSON.stringify(data, null, 2)}\n`], { type: 'application/json' });
  const link = element('a');
  link.href = URL.createObjectURL(blob);
  link.download = `${sessionName(current.title, current.created).replace(/[^\w.-]+/g, '-')}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  setStatus(`Exported ${data.messages.length} messages (clawbot sessions import reads the file)`);
}

async function importFile(file) {
  try {
    const conversation = importSession(JSON.parse(await file.text()));
    await persist(conversation);
    openConversation(conversation);
    setStatus(`Imported ${file.name}`);
  } catch (e) {
    notice(`Cannot import ${file.name}: ${e.message}`);
  }
}

// ------------------------------------------------------------------------------------------- wiring

function settingsChanged() {
  current.settings.temperature = Number($('temperature').value);
  current.settings.max_tokens = Number($('max-tokens').value);
  current.settings.system = $('system-prompt').value;
  persist(current);
}

async function start() {
  askKey = keyBox(() => loadModels());
  document.querySelector('.skip').addEventListener('click', (e) => {
    e.preventDefault();
    $('composer-input').focus();
  });
  $('send').addEventListener('click', send);
  $('stop').addEventListener('click', stop);
  $('composer-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && streaming) {
      e.preventDefault();
      stop();
    }
  });
  $('messages').addEventListener('click', onMessagesClick);
  $('conversation-list').addEventListener('click', onListClick);
  $('search').addEventListener('input', renderList);
  $('new-chat').addEventListener('click', newChat);
  $('export-button').addEventListener('click', exportCurrent);
  $('import-button').addEventListener('click', () => $('import-file').click());
  $('import-file').addEventListener('change', () => {
    const file = $('import-file').files[0];
    if (file) importFile(file);
    $('import-file').value = '';
  });
  $('settings-button').addEventListener('click', () => {
    const open = $('settings').hidden;
    $('settings').hidden = !open;
    $('settings-button').setAttribute('aria-expanded', String(open));
  });
  for (const id of ['temperature', 'max-tokens', 'system-prompt']) $(id).addEventListener('change', settingsChanged);
  $('model').addEventListener('change', () => {
    current.model = $('model').value;
    persist(current);
  });
  $('toggle-sidebar').addEventListener('click', () => {
    const open = !document.body.classList.contains('sidebar-open');
    document.body.classList.toggle('sidebar-open', open);
    $('toggle-sidebar').setAttribute('aria-expanded', String(open));
    if (open) $('search').focus();
  });
  $('modes').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-task]');
    if (b) runTask(b.dataset.task);
  });
  for (const c of await store.loadAll()) conversations.set(c.id, c);
  const latest = [...conversations.values()].sort((a, b) => b.updated - a.updated)[0];
  current = latest ?? store.newConversation();
  renderConversation();
  await loadModels();
}

start();
