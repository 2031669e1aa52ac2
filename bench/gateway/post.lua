-- wrk script for bench/gateway/run.sh: a small non-streaming chat completion, and a machine-readable summary
-- line ("WRKJSON {...}", latencies in microseconds) that run.sh parses instead of wrk's rounded text.
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"bench","messages":[{"role":"system","content":"You are terse."},' ..
           '{"role":"user","content":"Say hi."}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"socket_errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect + e.read + e.write + e.timeout, e.status))
end
