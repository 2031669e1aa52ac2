// gateway.json: the issue's example, defaults, relative paths, and a table of broken files with the message
// each gets (the file, the key, the value as written and what is allowed); unknown keys as warnings with
// the closest known name.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "gateway/config.h"

namespace fs = std::filesystem;
namespace gw = clawbot::gateway;
using std::chrono::milliseconds;

namespace {

class GatewayConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() / ("clawbot-gwconfig-" + std::to_string(random()));
    fs::create_directories(dir_);
    origin_ = (dir_ / "gateway.json").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void touch(const std::string& name) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name) << "not really PEM\n";
  }
  gw::GatewayConfig parse(const std::string& text) { return gw::parse_config(text, origin_, dir_); }
  // The message of the ConfigError that `text` gets ("" when it parses).
  std::string error_of(const std::string& text) {
    try {
      parse(text);
    } catch (const gw::ConfigError& e) {
      return e.what();
    }
    return {};
  }

  fs::path dir_;
  std::string origin_;
};

// Every message begins with the file it is about.
#define EXPECT_ERROR(text, ...)                                                                       \
  do {                                                                                                \
    const std::string message = error_of(text);                                                       \
    ASSERT_FALSE(message.empty()) << "no error for " << (text);                                       \
    EXPECT_TRUE(message.starts_with(origin_ + ": ")) << message;                                      \
    for (const std::string& piece : std::initializer_list<std::string>{__VA_ARGS__})                  \
      EXPECT_NE(message.find(piece), std::string::npos) << "\"" << piece << "\" not in: " << message; \
  } while (false)

const char* const kUp = R"("upstreams": [{"url": "http://10.0.0.1:5000"}])";

std::string with_upstream(const std::string& rest) {
  return std::string("{") + kUp + (rest.empty() ? "" : ", " + rest) + "}";
}

}  // namespace

TEST_F(GatewayConfigTest, TheIssuesExampleParses) {
  touch("gw.crt");
  touch("gw.key");
  const auto c = parse(R"(
    // the starting shape from the issue
    {
      "listen": [{ "host": "0.0.0.0", "port": 8443, "tls": { "cert": "gw.crt", "key": "gw.key" } }],
      "upstreams": [
        { "url": "http://192.168.1.100:5000" },
        { "url": "http://192.168.1.101:5000", "weight": 2 },
        { "url": "http://192.168.1.109:5000", "standby": true }  /* the cold standby */
      ],
      "balance": "least_outstanding",
      "keys_db": "gateway.db",
      "allow": ["192.168.1.0/24", "::1/128"],
      "audit_log": "audit.log"
    })");
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  EXPECT_EQ(c.file, origin_);
  ASSERT_EQ(c.listen.size(), 1u);
  EXPECT_EQ(c.listen[0].host, "0.0.0.0");
  EXPECT_EQ(c.listen[0].port, 8443);
  ASSERT_TRUE(c.listen[0].tls);
  EXPECT_EQ(fs::path(c.listen[0].tls->cert), dir_ / "gw.crt");
  EXPECT_EQ(fs::path(c.listen[0].tls->key), dir_ / "gw.key");
  EXPECT_TRUE(c.listen[0].tls->client_ca.empty());
  ASSERT_EQ(c.upstreams.size(), 3u);
  EXPECT_EQ(c.upstreams[0].url, "http://192.168.1.100:5000");
  EXPECT_EQ(c.upstreams[0].name, "192.168.1.100:5000");
  EXPECT_EQ(c.upstreams[0].parsed.host, "192.168.1.100");
  EXPECT_EQ(c.upstreams[0].parsed.port, "5000");
  EXPECT_EQ(c.upstreams[0].weight, 1);
  EXPECT_FALSE(c.upstreams[0].standby);
  EXPECT_EQ(c.upstreams[1].weight, 2);
  EXPECT_TRUE(c.upstreams[2].standby);
  EXPECT_EQ(c.balance, gw::Balance::least_outstanding);
  EXPECT_EQ(c.keys_db, dir_ / "gateway.db");
  EXPECT_EQ(c.allow, (std::vector<std::string>{"192.168.1.0/24", "::1/128"}));
  EXPECT_EQ(c.audit_log, dir_ / "audit.log");
}

TEST_F(GatewayConfigTest, Defaults) {
  const auto c = parse(with_upstream(""));
  EXPECT_TRUE(c.warnings.empty());
  ASSERT_EQ(c.listen.size(), 1u);
  EXPECT_EQ(c.listen[0].host, "0.0.0.0");
  EXPECT_EQ(c.listen[0].port, 8080);
  EXPECT_FALSE(c.listen[0].tls);
  EXPECT_EQ(c.upstreams[0].name, "10.0.0.1:5000");
  EXPECT_EQ(c.upstreams[0].max_in_flight, 0u);
  EXPECT_TRUE(c.upstreams[0].api_key.empty());
  EXPECT_EQ(c.balance, gw::Balance::least_outstanding);
  EXPECT_TRUE(c.affinity);
  EXPECT_EQ(c.auth, "keys");
  EXPECT_EQ(c.keys_db, dir_ / "gateway.db");  // beside the config
  EXPECT_TRUE(c.health_open);
  EXPECT_TRUE(c.allow.empty());
  EXPECT_TRUE(c.audit_log.empty());
  EXPECT_FALSE(c.audit_prompts);
  EXPECT_FALSE(c.tls_only);
  EXPECT_EQ(c.queue.max_waiting, 256u);
  EXPECT_EQ(c.queue.timeout, milliseconds(30000));
  EXPECT_EQ(c.health_checks.interval, milliseconds(2000));
  EXPECT_EQ(c.health_checks.timeout, milliseconds(1000));
  EXPECT_EQ(c.health_checks.path, "/health");
  EXPECT_EQ(c.circuit_breaker.failures, 3);
  EXPECT_EQ(c.circuit_breaker.cooldown, milliseconds(5000));
  EXPECT_EQ(c.retries, 2);
  EXPECT_TRUE(c.advertise);
  EXPECT_EQ(c.limits.max_body_bytes, 8u << 20);
  EXPECT_EQ(c.limits.upload_max_body_bytes, 25u << 20);  // OpenAI's file limit
  EXPECT_EQ(c.limits.audio_seconds_per_hour, 0);
  EXPECT_EQ(c.metrics_interval_s, 5);
}

TEST_F(GatewayConfigTest, MetricsIntervalIsANumberOfSeconds) {
  EXPECT_EQ(parse(with_upstream(R"("metrics_interval_s": 1)")).metrics_interval_s, 1);
  EXPECT_EQ(parse(with_upstream(R"("metrics_interval_s": 2.5)")).metrics_interval_s, 2.5);
  EXPECT_ERROR(with_upstream(R"("metrics_interval_s": 0)"), "\"metrics_interval_s\" is 0;",
               "from 0.5 to 3600");
  EXPECT_ERROR(with_upstream(R"("metrics_interval_s": "5")"), "\"metrics_interval_s\" is \"5\" (a string)");
}

TEST_F(GatewayConfigTest, EveryKeyParses) {
  touch("tls/gw.crt");
  touch("tls/gw.key");
  touch("tls/clients.pem");
  touch("ca/upstream-ca.pem");
  setenv("CLAWBOT_GWCONFIG_TEST_KEY", "sk-from-env", 1);
  const auto c = parse(R"({
    "listen": [{"host": "127.0.0.1", "port": 0},
               {"host": "::", "port": 8443,
                "tls": {"cert": "tls/gw.crt", "key": "tls/gw.key", "client_ca": "tls/clients.pem"}}],
    "upstreams": [{"url": "https://node-a.lan", "name": "a", "weight": 3, "max_in_flight": 8,
                   "api_key": "sk-a", "tls_ca_file": "ca/upstream-ca.pem"},
                  {"url": "http://[fd00::2]:5000/", "api_key_env": "CLAWBOT_GWCONFIG_TEST_KEY",
                   "tls_insecure": true, "standby": true}],
    "balance": "weighted_round_robin", "affinity": false, "auth": "none", "keys_db": "/var/lib/gw/keys.db",
    "health_open": false, "allow": [], "audit_log": "logs/audit.log", "audit_prompts": true,
    "tls_only": false,
    "limits": {"requests_per_minute": 60, "tokens_per_minute": 20000, "max_body_bytes": 1048576,
               "max_header_bytes": 8192, "upload_max_body_bytes": 2097152, "audio_seconds_per_hour": 3600},
    "queue": {"max_waiting": 0, "timeout_ms": 0},
    "health_checks": {"interval_ms": 500, "timeout_ms": 250, "path": "/v1/models"},
    "circuit_breaker": {"failures": 1, "cooldown_ms": 10},
    "retries": 0, "threads": 4, "connect_timeout_ms": 100, "read_timeout_ms": 1000,
    "advertise": false, "name": "lab gateway"
  })");
  unsetenv("CLAWBOT_GWCONFIG_TEST_KEY");
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[1].host, "::");
  EXPECT_EQ(fs::path(c.listen[1].tls->client_ca), dir_ / "tls/clients.pem");
  EXPECT_EQ(c.upstreams[0].name, "a");
  EXPECT_EQ(c.upstreams[0].parsed.port, "443");
  EXPECT_EQ(c.upstreams[0].weight, 3);
  EXPECT_EQ(c.upstreams[0].max_in_flight, 8u);
  EXPECT_EQ(c.upstreams[0].api_key, "sk-a");
  EXPECT_EQ(fs::path(c.upstreams[0].tls_ca_file), dir_ / "ca/upstream-ca.pem");
  EXPECT_EQ(c.upstreams[1].api_key, "sk-from-env");
  EXPECT_TRUE(c.upstreams[1].tls_insecure);
  EXPECT_EQ(c.balance, gw::Balance::weighted_round_robin);
  EXPECT_FALSE(c.affinity);
  EXPECT_EQ(c.auth, "none");
  EXPECT_EQ(c.keys_db, fs::path("/var/lib/gw/keys.db"));
  EXPECT_EQ(c.audit_log, dir_ / "logs/audit.log");
  EXPECT_EQ(c.limits.requests_per_minute, 60);
  EXPECT_EQ(c.limits.max_header_bytes, 8192u);
  EXPECT_EQ(c.limits.upload_max_body_bytes, 2097152u);
  EXPECT_EQ(c.limits.audio_seconds_per_hour, 3600);
  EXPECT_EQ(c.queue.max_waiting, 0u);
  EXPECT_EQ(c.queue.timeout, milliseconds(0));
  EXPECT_EQ(c.health_checks.path, "/v1/models");
  EXPECT_EQ(c.circuit_breaker.cooldown, milliseconds(10));
  EXPECT_EQ(c.threads, 4);
  EXPECT_EQ(c.read_timeout, milliseconds(1000));
  EXPECT_EQ(c.name, "lab gateway");
  // An open door is allowed, and said.
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("\"auth\" is \"none\""), std::string::npos) << c.warnings[0];
}

TEST_F(GatewayConfigTest, RelativePathsResolveAgainstTheConfigsFolderWhateverTheWorkingDirectory) {
  touch("certs/gw.crt");
  touch("certs/gw.key");
  fs::create_directories(dir_ / "conf");
  const fs::path file = dir_ / "conf" / "gateway.json";
  std::ofstream(file) << R"({"upstreams": [{"url": "http://10.0.0.1:5000"}],
    "listen": [{"port": 8443, "tls": {"cert": "../certs/gw.crt", "key": "../certs/gw.key"}}],
    "keys_db": "state/keys.db", "audit_log": "../logs/audit.log", "tls_only": true})";
  const fs::path cwd = fs::current_path();
  fs::current_path(fs::temp_directory_path());
  gw::GatewayConfig c;
  try {
    c = gw::load_config(fs::relative(file));
  } catch (...) {
    fs::current_path(cwd);
    throw;
  }
  fs::current_path(cwd);
  EXPECT_EQ(fs::path(c.listen[0].tls->cert), dir_ / "certs/gw.crt");
  EXPECT_EQ(c.keys_db, dir_ / "conf/state/keys.db");
  EXPECT_EQ(c.audit_log, dir_ / "logs/audit.log");
  EXPECT_TRUE(c.tls_only);

  // Without keys_db: gateway.db beside the file.
  std::ofstream(file) << with_upstream("");
  EXPECT_EQ(gw::load_config(file).keys_db, dir_ / "conf/gateway.db");
}

TEST_F(GatewayConfigTest, AMissingFileSaysSo) {
  try {
    gw::load_config(dir_ / "nope.json");
    FAIL() << "no error";
  } catch (const gw::ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((dir_ / "nope.json").string()), std::string::npos) << message;
    EXPECT_NE(message.find("no such file"), std::string::npos) << message;
  }
}

TEST_F(GatewayConfigTest, WrongTypesAndRangesNameTheKeyAndTheValue) {
  EXPECT_ERROR("[1, 2]", "one JSON object");
  EXPECT_ERROR("{\n  \"upstreams\": [\n  oops\n]}", "line 3");
  EXPECT_ERROR(R"({"listen": [{"port": 1}]})", "\"upstreams\" is missing");
  EXPECT_ERROR(R"({"upstreams": []})", "\"upstreams\" is [] (an array)", "allowed: a non-empty array");
  EXPECT_ERROR(R"({"upstreams": {"url": "http://10.0.0.1:5000"}})", "\"upstreams\" is {\"url\"",
               "(an object)");
  EXPECT_ERROR(R"({"upstreams": ["http://10.0.0.1:5000"]})",
               "\"upstreams[0]\" is \"http://10.0.0.1:5000\" (a string)", "an object such as");
  EXPECT_ERROR(R"({"upstreams": [{"weight": 2}]})", "\"upstreams[0]\"", "an object with a \"url\"");
  EXPECT_ERROR(with_upstream(R"("listen": {"port": 8443})"), "\"listen\" is {\"port\":8443} (an object)");
  EXPECT_ERROR(with_upstream(R"("listen": [{"port": "8443"}])"), "\"listen[0].port\" is \"8443\" (a string)",
               "an integer from 0 to 65535");
  EXPECT_ERROR(with_upstream(R"("listen": [{"port": 80}, {"port": 70000}])"), "\"listen[1].port\" is 70000",
               "from 0 to 65535");
  EXPECT_ERROR(with_upstream(R"("listen": [{"host": ""}])"), "\"listen[0].host\" is \"\" (a string)",
               "a non-empty string");
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "weight": 0}]})",
               "\"upstreams[0].weight\" is 0;", "an integer from 1 to 1000");
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "weight": "2"}]})",
               "\"upstreams[0].weight\" is \"2\" (a string)");
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "weight": 1.5}]})",
               "\"upstreams[0].weight\" is 1.5 (a number with a fraction)");
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000"}, {"url": "http://10.0.0.2:5000",
               "standby": "yes"}]})",
               "\"upstreams[1].standby\" is \"yes\" (a string)", "true or false");
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "max_in_flight": -1}]})",
               "\"upstreams[0].max_in_flight\" is -1", "an integer number of requests from 0");
  EXPECT_ERROR(R"({"upstreams": [{"url": 5000}]})", "\"upstreams[0].url\" is 5000;", "a string");
  EXPECT_ERROR(R"({"upstreams": [{"url": "ftp://10.0.0.1"}]})", "\"upstreams[0].url\" is \"ftp://10.0.0.1\"",
               "an http:// or https:// URL");
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:99999"}]})", "\"upstreams[0].url\"",
               "http://10.0.0.1:99999", "1 to 65535");
  EXPECT_ERROR(with_upstream(R"("balance": "round_robin")"), "\"balance\" is \"round_robin\" (a string)",
               "\"least_outstanding\" or \"weighted_round_robin\"");
  EXPECT_ERROR(with_upstream(R"("auth": "open")"), "\"auth\" is \"open\"", "\"keys\" or \"none\"");
  EXPECT_ERROR(with_upstream(R"("affinity": 1)"), "\"affinity\" is 1;", "true or false");
  EXPECT_ERROR(with_upstream(R"("allow": "192.168.1.0/24")"), "\"allow\" is \"192.168.1.0/24\" (a string)",
               "an array of CIDRs");
  EXPECT_ERROR(with_upstream(R"("allow": ["10.0.0.0/8", 5])"), "\"allow[1]\" is 5;");
  EXPECT_ERROR(with_upstream(R"("keys_db": "")"), "\"keys_db\" is \"\"", "a non-empty string");
  EXPECT_ERROR(with_upstream(R"("limits": 5)"), "\"limits\" is 5;", "an object such as");
  EXPECT_ERROR(with_upstream(R"("limits": {"max_body_bytes": 100})"), "\"limits.max_body_bytes\" is 100;",
               "bytes from 1024");
  EXPECT_ERROR(with_upstream(R"("limits": {"requests_per_minute": -1})"),
               "\"limits.requests_per_minute\" is -1");
  EXPECT_ERROR(with_upstream(R"("limits": {"upload_max_body_bytes": 10})"),
               "\"limits.upload_max_body_bytes\" is 10;", "bytes from 1024");
  EXPECT_ERROR(with_upstream(R"("limits": {"audio_seconds_per_hour": -5})"),
               "\"limits.audio_seconds_per_hour\" is -5");
  EXPECT_ERROR(with_upstream(R"("queue": {"max_waiting": -1})"), "\"queue.max_waiting\" is -1;",
               "an integer number of requests");
  EXPECT_ERROR(with_upstream(R"("queue": {"timeout_ms": "5s"})"), "\"queue.timeout_ms\" is \"5s\" (a string)",
               "milliseconds");
  EXPECT_ERROR(with_upstream(R"("health_checks": {"interval_ms": 10})"),
               "\"health_checks.interval_ms\" is 10;", "milliseconds from 50");
  EXPECT_ERROR(with_upstream(R"("health_checks": {"path": "health"})"),
               "\"health_checks.path\" is \"health\" (a string)", "starts with '/'");
  EXPECT_ERROR(with_upstream(R"("circuit_breaker": {"failures": 0})"), "\"circuit_breaker.failures\" is 0;",
               "from 1 to 1000");
  EXPECT_ERROR(with_upstream(R"("circuit_breaker": {"cooldown_ms": 5})"),
               "\"circuit_breaker.cooldown_ms\" is 5;");
  EXPECT_ERROR(with_upstream(R"("retries": 11)"), "\"retries\" is 11;", "from 0 to 10");
  EXPECT_ERROR(with_upstream(R"("threads": -1)"), "\"threads\" is -1;");
  EXPECT_ERROR(with_upstream(R"("connect_timeout_ms": 5)"), "\"connect_timeout_ms\" is 5;", "milliseconds");
  EXPECT_ERROR(with_upstream(R"("read_timeout_ms": true)"), "\"read_timeout_ms\" is true (a boolean)");
  EXPECT_ERROR(with_upstream(R"("name": "")"), "\"name\" is \"\"");
}

TEST_F(GatewayConfigTest, AnUpstreamUrlWithV1IsRefusedWithTheRootUrlToUseInstead) {
  for (const char* url : {"http://10.0.0.1:5000/v1", "http://10.0.0.1:5000/v1/"}) {
    EXPECT_ERROR(R"({"upstreams": [{"url": ")" + std::string(url) + R"("}]})",
                 "\"upstreams[0].url\" is \"" + std::string(url) + "\" (a string)",
                 "without /v1 (\"http://10.0.0.1:5000\")");
  }
  // Another base path is passed through as it is.
  const auto c = parse(R"({"upstreams": [{"url": "http://10.0.0.1:5000/llm"}]})");
  EXPECT_EQ(c.upstreams[0].parsed.path, "/llm");
}

TEST_F(GatewayConfigTest, ADuplicateUpstreamIsNamed) {
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000"}, {"url": "http://10.0.0.2:5000"},
                                 {"url": "http://10.0.0.1:5000/"}]})",
               "\"upstreams[2].url\" is \"http://10.0.0.1:5000/\"", "listed twice (also upstreams[0])");
  // Another port is another upstream.
  EXPECT_EQ(parse(R"({"upstreams": [{"url": "http://10.0.0.1:5000"}, {"url": "http://10.0.0.1:5001"}]})")
                .upstreams.size(),
            2u);
}

TEST_F(GatewayConfigTest, EveryUpstreamStandbyIsRefused) {
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "standby": true},
                                 {"url": "http://10.0.0.2:5000", "standby": true}]})",
               "\"standby\"", "upstream", "at least one must be a primary");
}

TEST_F(GatewayConfigTest, TlsOnlyWithoutTlsIsRefused) {
  touch("gw.crt");
  touch("gw.key");
  EXPECT_ERROR(with_upstream(R"("tls_only": true, "listen": [
                 {"port": 8443, "tls": {"cert": "gw.crt", "key": "gw.key"}}, {"port": 8080}])"),
               "\"tls_only\" is true", "listen[1]", "no \"tls\"");
  // Without listen, the default listener is plain HTTP: refused too.
  EXPECT_ERROR(with_upstream(R"("tls_only": true)"), "\"tls_only\"", "listen[0]");
  EXPECT_ERROR(with_upstream(R"("tls_only": "yes")"), "\"tls_only\" is \"yes\" (a string)");
}

TEST_F(GatewayConfigTest, TlsFilesMustExist) {
  touch("gw.key");
  EXPECT_ERROR(with_upstream(R"("listen": [{"tls": {"cert": "missing.crt", "key": "gw.key"}}])"),
               "\"listen[0].tls.cert\" is \"missing.crt\" (a string)", "a file that exists",
               (dir_ / "missing.crt").string() + " does not");
  EXPECT_ERROR(with_upstream(R"("listen": [{"tls": {"cert": "gw.key"}}])"), "\"listen[0].tls\"",
               "both \"cert\" and \"key\"");
  EXPECT_ERROR(with_upstream(R"("listen": [{"tls": true}])"), "\"listen[0].tls\" is true (a boolean)");
  EXPECT_ERROR(R"({"upstreams": [{"url": "https://10.0.0.1", "tls_ca_file": "ca.pem"}]})",
               "\"upstreams[0].tls_ca_file\" is \"ca.pem\"", (dir_ / "ca.pem").string());
}

TEST_F(GatewayConfigTest, AnApiKeyEnvThatIsNotSetIsRefused) {
  unsetenv("CLAWBOT_GWCONFIG_SURELY_UNSET");
  EXPECT_ERROR(
      R"({"upstreams": [{"url": "http://10.0.0.1:5000", "api_key_env": "CLAWBOT_GWCONFIG_SURELY_UNSET"}]})",
      "\"upstreams[0].api_key_env\" is \"CLAWBOT_GWCONFIG_SURELY_UNSET\" (a string)",
      "$CLAWBOT_GWCONFIG_SURELY_UNSET is not");
  setenv("CLAWBOT_GWCONFIG_EMPTY", "", 1);
  EXPECT_ERROR(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "api_key_env": "CLAWBOT_GWCONFIG_EMPTY"}]})",
               "\"upstreams[0].api_key_env\"", "$CLAWBOT_GWCONFIG_EMPTY is not");
  unsetenv("CLAWBOT_GWCONFIG_EMPTY");
}

TEST_F(GatewayConfigTest, UnknownKeysAreWarningsWithTheClosestName) {
  const auto c = parse(R"({"upstreams": [{"url": "http://10.0.0.1:5000", "wieght": 2}],
    "balanse": "least_outstanding", "queue": {"max_wait": 3}, "listen": [{"prot": 9000}],
    "circuit_breaker": {"cooldown": 100}, "zzzzzzzzzzzz": 1})");
  ASSERT_EQ(c.warnings.size(), 6u);
  auto has = [&](const std::string& a, const std::string& b) {
    for (const auto& w : c.warnings)
      if (w.starts_with(origin_ + ": ") && w.find(a) != std::string::npos && w.find(b) != std::string::npos)
        return true;
    return false;
  };
  EXPECT_TRUE(has("unknown key \"upstreams[0].wieght\"", "did you mean \"weight\"?"));
  EXPECT_TRUE(has("unknown key \"balanse\"", "did you mean \"balance\"?"));
  EXPECT_TRUE(has("unknown key \"queue.max_wait\"", "did you mean \"max_waiting\"?"));
  EXPECT_TRUE(has("unknown key \"listen[0].prot\"", "did you mean \"port\"?"));
  EXPECT_TRUE(has("unknown key \"circuit_breaker.cooldown\"", "did you mean \"cooldown_ms\"?"));
  EXPECT_TRUE(has("unknown key \"zzzzzzzzzzzz\" (ignored)", ""));
  for (const auto& w : c.warnings)
    if (w.find("zzzz") != std::string::npos) {
      EXPECT_EQ(w.find("did you mean"), std::string::npos) << w;
    }
  // Ignored means ignored: the defaults stand.
  EXPECT_EQ(c.upstreams[0].weight, 1);
  EXPECT_EQ(c.listen[0].port, 8080);
}

TEST_F(GatewayConfigTest, DefaultModelForUnknownNames) {
  EXPECT_EQ(parse(with_upstream("")).default_model, "");
  EXPECT_EQ(parse(with_upstream(R"("default_model": "qwen2.5-7b")")).default_model, "qwen2.5-7b");
  EXPECT_ERROR(with_upstream(R"("default_model": "")"), "\"default_model\" is \"\"", "a non-empty string");
  EXPECT_ERROR(with_upstream(R"("default_model": 7)"), "\"default_model\" is 7;", "a string");
  EXPECT_ERROR(with_upstream(R"("default_model": ")" + std::string(300, 'm') + "\""), "\"default_model\"",
               "at most 256 bytes");
  EXPECT_TRUE(parse(with_upstream(R"("default_model": "m")")).warnings.empty());
}

TEST_F(GatewayConfigTest, AlertsAsServeReadsThem) {
  // None given: the gateway's built-in rules (upstream_down among them), no webhooks.
  const auto defaults = parse(with_upstream("")).alerts;
  EXPECT_TRUE(std::any_of(defaults.rules.begin(), defaults.rules.end(),
                          [](const auto& r) { return r.name == "upstream_down"; }));
  EXPECT_TRUE(defaults.webhooks.empty());
  const auto c = parse(with_upstream(
      R"("alerts": {"rules": [{"name": "upstream_down", "for_s": 5}],
                    "webhooks": [{"url": "http://127.0.0.1:9093/hook", "format": "slack"}]})"));
  const auto down = std::find_if(c.alerts.rules.begin(), c.alerts.rules.end(),
                                 [](const auto& r) { return r.name == "upstream_down"; });
  ASSERT_NE(down, c.alerts.rules.end());
  EXPECT_EQ(down->for_s, 5);
  ASSERT_EQ(c.alerts.webhooks.size(), 1u);
  EXPECT_EQ(c.alerts.webhooks[0].format, clawbot::monitor::WebhookFormat::slack);
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_ERROR(with_upstream(R"("alerts": {"rules": [{"name": "x", "series": "ttft", "threshold": 1}]})"),
               "\"alerts.rules[0].series\" is \"ttft\"", "the name of a series");
  EXPECT_ERROR(with_upstream(R"("alerts": [])"), "\"alerts\" is [] (an array)", "an object such as");
  EXPECT_EQ(parse(with_upstream(R"("alerts": {"rule": []})")).warnings.at(0),
            origin_ + ": unknown key \"alerts.rule\" (ignored); did you mean \"rules\"?");
}
