#include "client/endpoint_auto.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "client/config.h"
#include "common/http_client.h"
#include "common/user_dirs.h"
#include "discovery/discovery.h"

namespace clawbot::client {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int role_rank(const std::string& role) {
  return role == "gateway" ? 0 : role == "node" ? 1 : 2;
}

std::int64_t now_unix() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

std::optional<AutoEndpoint> read_cache() {
  std::ifstream in(endpoint_cache_path());
  if (!in) return std::nullopt;
  try {
    const json j = json::parse(in);
    AutoEndpoint e;
    e.url = j.at("url").get<std::string>();
    e.instance = j.value("instance", std::string());
    e.role = j.value("role", std::string());
    e.expires_unix = j.at("expires").get<std::int64_t>();
    e.source = "cache";
    if (e.expires_unix <= now_unix()) return std::nullopt;
    return e;
  } catch (const json::exception&) {
    return std::nullopt;  // a damaged cache is only a cache: look again
  }
}

void write_cache(const AutoEndpoint& e) {
  std::error_code ec;
  const fs::path path = endpoint_cache_path();
  fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json{{"url", e.url},
                {"instance", e.instance},
                {"role", e.role},
                {"found_by", e.source},
                {"expires", e.expires_unix}}
               .dump(2)
        << "\n";
    if (!out) return;  // an unwritable cache costs a browse next time, nothing more
  }
  fs::rename(tmp, path, ec);
}

void forget_cache() {
  std::error_code ec;
  fs::remove(endpoint_cache_path(), ec);
}

// Whether the cached endpoint still answers (one quick GET /health).
bool still_answers(const AutoEndpoint& e) {
  auto url = http::parse_url(e.url);
  if (!url) return false;
  discovery::Found f;
  f.addresses = {url->host};
  f.port = static_cast<unsigned short>(std::stoi(url->port));
  f.txt["tls"] = url->is_https() ? "yes" : "no";
  const auto probes = discovery::probe({f}, std::chrono::milliseconds(1000));
  return probes.front().reachable;
}

}  // namespace

fs::path endpoint_cache_path() {
  // Without a cache directory the choice is kept in the temporary directory, as a cache it costs only a
  // browse.
  if (const auto cache = user_dirs::find(user_dirs::Kind::cache)) return *cache / "clawbot" / "endpoint.json";
  return fs::temp_directory_path() / "clawbot-endpoint.json";
}

std::string AutoEndpoint::describe() const {
  std::string how = source == "cache" ? "cached choice" : "found now via " + source + " mDNS";
  if (candidates > 1) how += fmt::format(", best of {}", candidates);
  if (source != "cache" && !reachable) how += ", NOT answering";
  return fmt::format("{} ('{}', {}; {})", url, instance, role.empty() ? "?" : role, how);
}

json AutoEndpoint::to_json() const {
  return {{"url", url},
          {"instance", instance},
          {"role", role},
          {"source", source},
          {"reachable", reachable},
          {"latency_ms", latency_ms},
          {"candidates", candidates},
          {"expires", expires_unix}};
}

AutoEndpoint resolve_auto_endpoint(const AutoOptions& options) {
  if (options.use_cache) {
    if (auto cached = read_cache()) {
      if (still_answers(*cached)) {
        cached->reachable = true;
        return *cached;
      }
      forget_cache();
    }
  }
  const std::vector<discovery::Found> found = discovery::browse(options.browse_wait);
  if (found.empty()) {
    const double seconds = static_cast<double>(options.browse_wait.count()) / 1000.0;
    throw ConfigError(fmt::format(
        "model_endpoint is \"auto\", but no clawbot node or gateway answered mDNS within {:g} s on this LAN "
        "(asked via {}); start `clawbot serve --host 0.0.0.0` on the node, check that UDP port 5353 is open, "
        "or "
        "set model_endpoint to the node's URL, e.g. http://192.168.1.100:5000",
        seconds, discovery::active_backend()));
  }
  const std::vector<discovery::Probe> probes = discovery::probe(found, std::chrono::milliseconds(1000));
  std::vector<std::size_t> order(found.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Reachable first (a node that answers beats a gateway that does not), then a gateway over a node, then
  // the lower latency.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto key = [&](std::size_t i) {
      return std::tuple(!probes[i].reachable, role_rank(found[i].role()),
                        probes[i].reachable ? probes[i].ms : 0.0);
    };
    return key(a) < key(b);
  });
  const std::size_t best = order.front();
  const discovery::Found& f = found[best];
  AutoEndpoint e;
  e.url = f.url();
  e.instance = f.instance;
  e.role = f.role();
  e.source = f.source;
  e.reachable = probes[best].reachable;
  e.latency_ms = probes[best].ms;
  e.candidates = static_cast<int>(found.size());
  e.expires_unix = now_unix() + std::max<std::uint32_t>(f.ttl, 1);
  if (e.reachable && options.use_cache) write_cache(e);
  return e;
}

}  // namespace clawbot::client
