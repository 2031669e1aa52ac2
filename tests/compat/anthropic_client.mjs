// The official `@anthropic-ai/sdk` package, loaded once for the compatibility tests, with what to do when it is
// missing.
let Anthropic;
try {
  ({ default: Anthropic } = await import('@anthropic-ai/sdk'));
} catch (e) {
  throw new Error(`cannot load "@anthropic-ai/sdk" (${e.message}); install it first: ` +
    '(cd tests/compat && npm ci --ignore-scripts)');
}

export default Anthropic;
