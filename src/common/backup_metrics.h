// The backup's figures on serve's and the gateway's /metrics. `clawbot backup create` is a short-lived
// process (a systemd timer's oneshot) that nothing scrapes, so it writes its figures in Prometheus text
// format to a file in the state directory (as node_exporter's textfile collector expects them), and the
// long-running servers on the same machine append that file to their /metrics at each scrape:
//   clawbot_backup_last_success_timestamp_seconds, clawbot_backup_last_failure_timestamp_seconds,
//   clawbot_backup_last_added_bytes, clawbot_backup_last_ok.
#pragma once

#include <filesystem>
#include <string>

namespace clawbot {

// ${XDG_STATE_HOME:-~/.local/state}/clawbot/backup/metrics.prom; empty when neither variable is set.
std::filesystem::path backup_metrics_path();

// The file's clawbot_backup_* lines (and their # HELP/# TYPE), at most 16 KiB; "" when there is no file.
std::string backup_metrics_text();

}  // namespace clawbot
