// The official `ollama` package (ollama-js), loaded once for the compatibility tests, with what to do when it
// is missing.
let Ollama;
try {
  ({ Ollama } = await import('ollama'));
} catch (e) {
  throw new Error(`cannot load the "ollama" package (${e.message}); install it first: ` +
    '(cd tests/compat && npm ci --ignore-scripts)');
}

export default Ollama;
