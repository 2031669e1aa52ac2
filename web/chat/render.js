// Model output to the page: Markdown (marked) whose raw HTML is shown as text, sanitised again by DOMPurify
// (no script, no event handler, no image or style, links only to http(s) and mailto), code blocks highlighted
// by highlight.js (its core and a few languages) with a copy button. Nothing the model writes can run or
// make the page load anything.
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import c from 'highlight.js/lib/languages/c';
import cpp from 'highlight.js/lib/languages/cpp';
import css from 'highlight.js/lib/languages/css';
import diff from 'highlight.js/lib/languages/diff';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';
import { Marked } from 'marked';

for (const [name, language] of Object.entries({ bash, c, cpp, css, diff, go, java, javascript, json, python, rust, sql, typescript, xml, yaml }))
  hljs.registerLanguage(name, language);

const escapeHtml = (text) => text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const SAFE_LINK = /^(https?:|mailto:)/i;

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML in the answer is text: `<script>` is shown, not run (DOMPurify would drop it anyway).
    html({ text }) {
      return escapeHtml(text);
    },
    // An image is a link to it, never loaded: a page that fetches what a model names leaks the chat.
    image({ href, text }) {
      const label = `image: ${text || href}`;
      return SAFE_LINK.test(href) ? `<a href="${escapeHtml(href)}">${escapeHtml(label)}</a>` : escapeHtml(label);
    },
  },
});

const PURIFY = {
  FORBID_TAGS: ['img', 'style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'object', 'embed',
    'svg', 'math', 'video', 'audio', 'source', 'picture', 'link', 'meta', 'base'],
  FORBID_ATTR: ['style', 'srcset', 'action', 'formaction'],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName !== 'A') return;
  const href = node.getAttribute('href') ?? '';
  if (!SAFE_LINK.test(href.trim())) {
    node.removeAttribute('href');  // javascript:, data:, relative paths: text only
    node.classList.add('unsafe-link');
    node.title = href ? `link not followed: ${href.slice(0, 200)}` : '';
    return;
  }
  node.setAttribute('target', '_blank');
  node.setAttribute('rel', 'noopener noreferrer nofollow');
});

/** Splits a leading <think>…</think> (reasoning left in the content) from the answer. */
export function splitThinking(content) {
  const m = /^\s*<think>([\s\S]*?)(<\/think>|$)/.exec(content);
  if (!m) return { reasoning: '', answer: content };
  return { reasoning: m[1].trim(), answer: content.slice(m[0].length).replace(/^\s+/, '') };
}

function decorateCode(root) {
  for (const code of root.querySelectorAll('pre > code')) {
    const lang = (/language-([\w+-]+)/.exec(code.className) ?? [])[1]?.toLowerCase();
    const source = code.textContent;
    if (lang && hljs.getLanguage(lang)) {
      code.innerHTML = hljs.highlight(source, { language: lang, ignoreIllegals: true }).value;  // escaped by hljs
      code.classList.add('hljs');
    }
    const pre = code.parentElement;
    const bar = document.createElement('div');
    bar.className = 'code-bar';
    const label = document.createElement('span');
    label.textContent = lang || 'text';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy-code';
    copy.textContent = 'Copy';
    copy.setAttribute('aria-label', `Copy the ${lang || 'text'} code`);
    bar.append(label, copy);
    pre.before(bar);
  }
}

/** Markdown to a sanitised fragment. */
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(marked.parse(text ?? ''), PURIFY);
  decorateCode(fragment);
  return fragment;
}

/** The copy buttons of every rendered answer (one listener: the page has no inline script). */
export function handleCopy(event) {
  const button = event.target.closest?.('button.copy-code');
  if (!button) return false;
  const code = button.parentElement.nextElementSibling?.textContent ?? '';
  const done = () => {
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  };
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(code).then(done, () => { button.textContent = 'Copy failed'; });
  return true;
}
