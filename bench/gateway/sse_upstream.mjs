// Labelled SSE upstream for bench/gateway/run.sh (not a model): POST /v1/chat/completions with "stream": true
// answers text/event-stream with one `data:` chunk per second for --duration seconds, then (when the request
// asked for stream_options.include_usage) a usage chunk, then `data: [DONE]`. Without "stream" it answers a
// fixed JSON body. GET /health and GET /v1/models answer as an OpenAI-compatible server would.
//   node sse_upstream.mjs --port P [--host 127.0.0.1] [--duration 60] [--interval-ms 1000]
import http from 'node:http';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const host = args.host ?? '127.0.0.1';
const port = Number(args.port ?? 0);
const duration = Number(args.duration ?? 60);
const intervalMs = Number(args['interval-ms'] ?? 1000);

const fixed = JSON.stringify({
  id: 'chatcmpl-bench', object: 'chat.completion', created: 0, model: 'bench',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hi.' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 },
});
const chunk = (i) => JSON.stringify({
  id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 0, model: 'bench',
  choices: [{ index: 0, delta: { content: `tok${i} ` }, finish_reason: null }],
});

let open = 0;
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end('{"status":"ok"}');
  }
  if (req.method === 'GET' && req.url === '/v1/models') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end('{"object":"list","data":[{"id":"bench","object":"model","owned_by":"bench"}]}');
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    let parsed = {};
    try { parsed = JSON.parse(body); } catch { /* fixed answer anyway */ }
    if (!parsed.stream) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(fixed);
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.socket.setNoDelay(true);
    open++;
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < duration) {
        res.write(`data: ${chunk(sent++)}\n\n`);
        return;
      }
      clearInterval(timer);
      if (parsed.stream_options?.include_usage)
        res.write(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":${duration},"total_tokens":${12 + duration}}}\n\n`);
      res.end('data: [DONE]\n\n');
      open--;
    }, intervalMs);
    res.on('close', () => { if (!res.writableEnded) { clearInterval(timer); open--; } });
  });
});
server.keepAliveTimeout = 120000;
server.maxConnections = 100000;
server.listen(port, host, () => console.log(`sse upstream listening on http://${host}:${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
