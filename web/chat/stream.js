// One streamed chat completion (POST /v1/chat/completions, stream: true): the text and reasoning as they
// arrive, then how it ended. A stream that breaks off (the node stopped, the Wi-Fi dropped) is a
// StreamBroken with what arrived kept by the caller; Stop is an abort, not a failure.
import { apiFetch, failure } from '../shared/api.js';

export class StreamBroken extends Error {}

/** Server-sent events' data payloads from a fetch body. */
async function* events(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
        const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
        if (data.length) yield data.join('\n');
      }
    }
  } catch (e) {
    if (signal.aborted) throw e;
    throw new StreamBroken(`the connection dropped (${e.message})`);
  }
}

/**
 * Streams `request` (a chat completions body) and calls `onDelta({content, reasoning})` per chunk. Resolves
 * { finish, usage, timings, upstream, ttftMs, elapsedMs }. Throws NeedKey / HttpError before the first byte,
 * StreamBroken after it, an AbortError when `signal` aborts.
 */
export async function streamChat(request, { signal, onDelta, onStart }) {
  const started = performance.now();
  let res;
  try {
    res = await apiFetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
      signal,
    });
  } catch (e) {
    if (signal.aborted) throw e;
    throw new StreamBroken(`the server cannot be reached (${e.message}): it may be restarting, or the network is down`);
  }
  if (!res.ok) throw await failure(res);
  const upstream = res.headers.get('x-clawbot-upstream') ?? '';
  onStart?.({ upstream });
  const result = { finish: '', usage: null, timings: null, upstream, ttftMs: undefined, firstAt: 0, done: false };
  for await (const data of events(res.body, signal)) {
    if (data === '[DONE]') {
      result.done = true;
      break;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      continue;  // not ours to judge: a comment-like line
    }
    if (chunk.error) throw new StreamBroken(chunk.error.message || 'the server reported an error mid-answer');
    if (chunk.usage) result.usage = chunk.usage;
    if (chunk.timings) result.timings = chunk.timings;
    if (Array.isArray(chunk.citations)) result.citations = chunk.citations;  // a knowledge base's answer (model kb:NAME)
    const choice = chunk.choices?.[0];
    if (!choice) continue;
    const content = choice.delta?.content ?? '';
    const reasoning = choice.delta?.reasoning_content ?? '';
    if ((content || reasoning) && result.ttftMs === undefined) {
      result.ttftMs = performance.now() - started;
      result.firstAt = performance.now();
    }
    if (content || reasoning) onDelta({ content, reasoning });
    if (choice.finish_reason) result.finish = choice.finish_reason;
  }
  if (!result.done && !result.finish) throw new StreamBroken('the connection closed before the answer was finished');
  result.decodeMs = result.firstAt ? performance.now() - result.firstAt : 0;
  return result;
}
