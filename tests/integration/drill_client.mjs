// The drill's load: CONCURRENCY clients, each sending streamed chat requests one after another to the gateway
// at URL with KEY, until the file STOP exists; then one JSON line per request on stdout:
//   { start, headers, first, end, status, upstream, content, done, error }   (times: Date.now() ms)
// `first`: the first content event; `error`: an error event's message (a stream cut mid-way) or the
// failure before any answer. Run inside the drill's network namespace (node drill_client.mjs URL KEY N STOP).
import fs from 'node:fs';

const [url, key, concurrency, stopFile] = process.argv.slice(2);
const results = [];
const running = () => !fs.existsSync(stopFile);

async function one(i) {
  const r = { start: Date.now(), headers: null, first: null, end: null, status: 0, upstream: null, content: 0, done: false, error: null };
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ messages: [{ role: 'user', content: `drill ${i}` }], max_tokens: 24, stream: true }),
      signal: AbortSignal.timeout(30000),
    });
    r.headers = Date.now();
    r.status = res.status;
    r.upstream = res.headers.get('x-clawbot-upstream');
    if (res.status !== 200) {
      r.error = (await res.text()).slice(0, 300);
    } else {
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          if (!event.startsWith('data: ')) continue;
          const data = event.slice(6);
          if (data === '[DONE]') { r.done = true; continue; }
          const parsed = JSON.parse(data);
          if (parsed.error) r.error = parsed.error.message;
          else if (parsed.choices?.[0]?.delta?.content) {
            if (r.content === 0) r.first = Date.now();
            r.content += 1;
          }
        }
      }
    }
  } catch (e) {
    r.error = `${e.name}: ${e.message}`;
  }
  r.end = Date.now();
  results.push(r);
}

async function loop(worker) {
  for (let i = 0; running(); i++) await one(`${worker}.${i}`);
}

await Promise.all(Array.from({ length: Number(concurrency) }, (_, w) => loop(w)));
for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
