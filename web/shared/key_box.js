// The key box of a page served by the gateway (ids key-box, key-why, key-input, key-use): asks once, keeps
// the key in this tab's sessionStorage (shared/api.js), and tells the page when a key was entered.
import { storedKey, useKey } from './api.js';

const $ = (id) => document.getElementById(id);

/** Wires the box; `onKey` runs after a key is entered. Returns ask(error, why): shows the box. */
export function keyBox(onKey) {
  const use = () => {
    const key = $('key-input').value.trim();
    if (!key) return;
    $('key-input').value = '';
    useKey(key);
    $('key-box').hidden = true;
    onKey();
  };
  $('key-use').addEventListener('click', use);
  $('key-input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter') use();
  });
  if (storedKey()) useKey(storedKey());
  return function ask(error, why) {
    $('key-why').textContent = error.hadKey ? `The key was refused: ${error.message}` : why;
    if (error.hadKey) useKey('');
    $('key-box').hidden = false;
    $('key-input').focus();
  };
}
