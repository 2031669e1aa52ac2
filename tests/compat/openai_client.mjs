// The official `openai` package, loaded once for the compatibility tests, with what to do when it is missing.
let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch (e) {
  throw new Error(
    `cannot load the "openai" package (${e.message}); install it first: ` +
    '(cd tests/compat && npm ci --ignore-scripts)',
  );
}

export default OpenAI;
