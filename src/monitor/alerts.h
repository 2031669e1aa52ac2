// Alerts evaluated in the process, on the history's samples (monitor/history.h): a rule compares one series
// with a threshold, and fires only after it has held for `for_s` seconds, so that a spike pages nobody.
//
// CONTRACT (issue 20).
// Rules file (`serve --alerts FILE`; the same object under "alerts" in gateway.json), read with json_read:
//   {
//     "defaults": true,            // keep the built-in rules (a rule of the same name replaces one)
//     "rules": [ { "name": "memory_high", "series": "memory_used_ratio", "op": ">=", "threshold": 0.9,
//                  "for_s": 60, "severity": "critical", "summary": "memory used {value} >= {threshold}" } ],
//     "webhooks": [ { "url": "http://127.0.0.1:9/hook", "format": "json" | "slack",
//                     "headers": { "Authorization": "..." }, "timeout_s": 5, "retries": 3 } ]
//   }
// Built-in rules: memory_high (memory_used_ratio >= 0.9, the deployment guide's figure), ttft_p99_high
// (ttft_p99_s > 0.2), e2e_p99_high (e2e_p99_s > a threshold), error_rate_high (error_ratio > 0.05),
// queue_full (queue_full_ratio >= 1), upstream_down (gateway: one alert per upstream not healthy),
// cert_expiring (tls_cert_days_left < 14).
//
// GET /api/alerts:
//   { "alerts": [ { "name", "severity", "state": "pending" | "firing" | "resolved", "summary", "series",
//                   "upstream" (only for per-upstream rules), "value", "threshold", "op", "for_s",
//                   "since" (unix s, when the condition began), "fired_at", "resolved_at" (unix s or null) }
//                   ],
//     "rules": [ { "name", "series", "op", "threshold", "for_s", "severity" } ] }
//   Resolved alerts stay listed for an hour.
// Webhook "json": Alertmanager's webhook payload (version "4", status firing|resolved, alerts[] with labels
// {alertname, severity, instance, role, upstream?}, annotations {summary}, startsAt, endsAt), so receivers
// written for Alertmanager work unchanged. "slack": {"text": "..."}. Sent on firing and on resolved, retried
// with backoff. Every transition is also one log line (spdlog warn when firing, info when resolved).
#pragma once
