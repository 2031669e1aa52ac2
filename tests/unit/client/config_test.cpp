// clawbot.json: a table of files and the message each gets; where the file is looked for; context fitting.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "client/assistant.h"
#include "client/config.h"
#include "common/edit_distance.h"

namespace fs = std::filesystem;
using namespace clawbot::client;

namespace {

struct Case {
  const char* name;
  const char* text;
  const char* expected;  // a piece of the error message; nullptr: valid
};

const Case kCases[] = {
    {"empty object", "{}", nullptr},
    {"the five fields",
     R"({"model_endpoint": "http://192.168.1.100:5000", "max_tokens": 8192, "temperature": 0.7,
       "network_timeout": 30000, "retry_policy": {"max_retries": 3, "backoff_factor": 1.5}})",
     nullptr},
    {"comments allowed", "// a comment\n{ /* here too */ \"temperature\": 0.2 }", nullptr},
    {"https and /v1", R"({"model_endpoint": "https://node.lan/v1"})", nullptr},
    {"auto", R"({"model_endpoint": "auto"})", nullptr},
    {"not json", "{\"temperature\": 0.7,,}", "not valid JSON at line 1, column"},
    {"not json, line 3", "{\n  \"temperature\": 0.7,\n  oops\n}", "line 3"},
    {"array", "[1, 2]", "must hold one JSON object"},
    {"endpoint no scheme", R"({"model_endpoint": "192.168.1.100:5000"})",
     "\"model_endpoint\" is \"192.168.1.100:5000\" (a string); allowed: an http:// or https:// URL"},
    {"endpoint ftp", R"({"model_endpoint": "ftp://x"})", "allowed: an http:// or https:// URL"},
    {"endpoint number", R"({"model_endpoint": 5000})", "\"model_endpoint\" is 5000; allowed: a string"},
    {"max_tokens string", R"({"max_tokens": "100"})",
     "\"max_tokens\" is \"100\" (a string); allowed: an integer from 1 to 10000000"},
    {"max_tokens zero", R"({"max_tokens": 0})",
     "\"max_tokens\" is 0; allowed: an integer from 1 to 10000000"},
    {"max_tokens fraction", R"({"max_tokens": 10.5})", "\"max_tokens\" is 10.5 (a number with a fraction)"},
    {"max_tokens 100.0 is 100", R"({"max_tokens": 100.0})", nullptr},
    {"temperature high", R"({"temperature": 3.5})",
     "\"temperature\" is 3.5 (a number with a fraction); allowed: a number from 0 to 2"},
    {"temperature bool", R"({"temperature": true})", "\"temperature\" is true (a boolean)"},
    {"timeout in seconds", R"({"network_timeout": 30})", "it is in milliseconds: 30 seconds is 30000"},
    {"timeout negative", R"({"network_timeout": -5})",
     "\"network_timeout\" is -5; allowed: an integer number of milliseconds"},
    {"retry not object", R"({"retry_policy": 3})", "\"retry_policy\" is 3; allowed: an object"},
    {"max_retries negative", R"({"retry_policy": {"max_retries": -1}})",
     "\"retry_policy.max_retries\" is -1; allowed: an integer from 0 to 100"},
    {"backoff below 1", R"({"retry_policy": {"backoff_factor": 0.5}})",
     "\"retry_policy.backoff_factor\" is 0.5 (a number with a fraction); allowed: a number from 1 to 10"},
    {"key env bad name", R"({"api_key_env": "MY KEY"})", "allowed: the name of an environment variable"},
    {"both keys", R"({"api_key": "sk-1", "api_key_env": "K"})",
     "both \"api_key\" and \"api_key_env\" are set"},
    {"missing CA", R"({"tls_ca_file": "/nonexistent/ca.pem"})", "a PEM file that exists"},
    {"context negative", R"({"context_length": -1})", "\"context_length\" is -1"},
};

// gtest prints a parameter in test listings (and so in ctest's names): the case's name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ConfigTable : public ::testing::TestWithParam<Case> {};

TEST_P(ConfigTable, GivesItsMessage) {
  const Case& c = GetParam();
  if (c.expected == nullptr) {
    EXPECT_NO_THROW(parse_config(c.text, "test.json")) << c.name;
    return;
  }
  try {
    parse_config(c.text, "test.json");
    FAIL() << c.name << ": accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos)
        << c.name << ": got «" << e.what() << "», wanted a message with «" << c.expected << "»";
    EXPECT_EQ(std::string(e.what()).rfind("test.json", 0), 0u) << "the message names the file: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Files, ConfigTable, ::testing::ValuesIn(kCases), [](const auto& param_info) {
  std::string name = param_info.param.name;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
});

TEST(Config, ValuesAndSources) {
  const ClientConfig c = parse_config(R"({"model_endpoint": "http://10.0.0.1:5000/", "max_tokens": 512,
      "retry_policy": {"max_retries": 5, "base_delay": 100}})",
                                      "a.json");
  EXPECT_EQ(c.model_endpoint, "http://10.0.0.1:5000");
  EXPECT_EQ(c.max_tokens, 512);
  EXPECT_EQ(c.retry_policy.max_retries, 5);
  EXPECT_DOUBLE_EQ(c.retry_policy.backoff_factor, 1.5);  // default kept
  EXPECT_EQ(c.retry_policy.base_delay.count(), 100);
  EXPECT_EQ(c.source.at("max_tokens"), "a.json");
  EXPECT_EQ(c.source.at("retry_policy.max_retries"), "a.json");
  EXPECT_EQ(c.source.count("temperature"), 0u);  // default
}

TEST(Config, UnknownKeysWarnWithTheClosestName) {
  const ClientConfig c =
      parse_config(R"({"temprature": 0.5, "retry_policy": {"max_retry": 2}, "zzzzzz": 1})", "b.json");
  ASSERT_EQ(c.warnings.size(), 3u);
  EXPECT_NE(c.warnings[0].find("did you mean \"max_retries\""), std::string::npos) << c.warnings[0];
  EXPECT_NE(c.warnings[1].find("did you mean \"temperature\""), std::string::npos) << c.warnings[1];
  EXPECT_EQ(c.warnings[2].find("did you mean"), std::string::npos) << c.warnings[2];
  EXPECT_DOUBLE_EQ(c.temperature, 0.7);  // the misspelt key changed nothing
}

TEST(Config, RelativePathsAreRelativeToTheFile) {
  const ClientConfig c = parse_config(R"({"session_db": "s.db"})", "/etc/clawbot/clawbot.json");
  EXPECT_EQ(c.session_db, "/etc/clawbot/s.db");
}

TEST(Config, ApiKeyFromTheEnvironment) {
  ClientConfig c = parse_config(R"({"api_key_env": "CLAWBOT_TEST_KEY_X"})", "c.json");
  ::unsetenv("CLAWBOT_TEST_KEY_X");
  try {
    (void)c.resolved_api_key();
    FAIL() << "an unset variable was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("$CLAWBOT_TEST_KEY_X, which is not set"), std::string::npos)
        << e.what();
  }
  ::setenv("CLAWBOT_TEST_KEY_X", "sk-secret", 1);
  EXPECT_EQ(c.resolved_api_key(), "sk-secret");
  ::unsetenv("CLAWBOT_TEST_KEY_X");
}

TEST(Config, RetryDelaysFollowThePolicy) {
  RetryPolicy p;
  p.base_delay = std::chrono::milliseconds(200);
  p.backoff_factor = 2;
  EXPECT_EQ(p.delay(1, 1.0).count(), 200);
  EXPECT_EQ(p.delay(2, 1.0).count(), 400);
  EXPECT_EQ(p.delay(3, 1.0).count(), 800);
  EXPECT_EQ(p.delay(3, 1.2).count(), 960);
}

TEST(Config, EditDistance) {
  EXPECT_EQ(clawbot::edit_distance("temprature", "temperature"), 1u);
  EXPECT_EQ(clawbot::edit_distance("", "abc"), 3u);
  EXPECT_EQ(clawbot::edit_distance("same", "same"), 0u);
}

// The search order: --config, $CLAWBOT_CONFIG, ./clawbot.json, the user's config folder.
class ConfigSearchOrder : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("clawbot-config-test-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "cwd");
    fs::create_directories(root_ / "xdg" / "clawbot");
    old_cwd_ = fs::current_path();
    fs::current_path(root_ / "cwd");
    ::setenv("XDG_CONFIG_HOME", (root_ / "xdg").c_str(), 1);
    ::unsetenv("CLAWBOT_CONFIG");
  }
  void TearDown() override {
    fs::current_path(old_cwd_);
    ::unsetenv("XDG_CONFIG_HOME");
    ::unsetenv("CLAWBOT_CONFIG");
    fs::remove_all(root_);
  }
  void write(const fs::path& p, int max_tokens) {
    std::ofstream(p) << "{\"max_tokens\": " << max_tokens << "}";
  }
  fs::path root_, old_cwd_;
};

TEST_F(ConfigSearchOrder, EachLocationWinsOverTheNext) {
  EXPECT_FALSE(find_config({}).has_value());
  EXPECT_EQ(load_config({}).max_tokens, 8192);  // built-in default

  write(root_ / "xdg" / "clawbot" / "clawbot.json", 1);
  EXPECT_EQ(load_config({}).max_tokens, 1);
  EXPECT_EQ(find_config({})->reason, "user config");

  write(root_ / "cwd" / "clawbot.json", 2);
  EXPECT_EQ(load_config({}).max_tokens, 2);

  write(root_ / "env.json", 3);
  ::setenv("CLAWBOT_CONFIG", (root_ / "env.json").c_str(), 1);
  EXPECT_EQ(load_config({}).max_tokens, 3);

  write(root_ / "flag.json", 4);
  EXPECT_EQ(load_config({(root_ / "flag.json").string()}).max_tokens, 4);
  EXPECT_EQ(find_config({(root_ / "flag.json").string()})->reason, "--config");
}

TEST_F(ConfigSearchOrder, NamedFilesMustExist) {
  EXPECT_THROW(load_config({(root_ / "missing.json").string()}), ConfigError);
  ::setenv("CLAWBOT_CONFIG", (root_ / "missing.json").c_str(), 1);
  try {
    load_config({});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("$CLAWBOT_CONFIG names"), std::string::npos) << e.what();
  }
}

TEST_F(ConfigSearchOrder, StarterFileIsValid) {
  const ClientConfig c = parse_config(starter_config_text(), "starter");
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.network_timeout.count(), 30000);
}

// Context fitting: the system prompt and the newest turns stay.
TEST(ContextFit, DropsWholeOldestTurns) {
  std::vector<ChatMessage> conv = {{"system", "be brief"}};
  for (int i = 0; i < 10; ++i) {
    conv.push_back({"user", std::string(100, 'q')});
    conv.push_back({"assistant", std::string(100, 'a')});
  }
  conv.push_back({"user", "last question"});
  // 1 token a byte: each turn is 208 tokens; allow about three turns.
  const ContextFit fit = fit_to_context(conv, 800, 100, 1.0);
  ASSERT_TRUE(fit.fits);
  EXPECT_EQ(fit.messages.front().role, "system");
  EXPECT_EQ(fit.messages.back().content, "last question");
  EXPECT_EQ(fit.messages[1].role, "user") << "a turn starts with the user";
  EXPECT_EQ(fit.dropped_messages % 2, 0);
  EXPECT_LE(fit.estimated_tokens, 700);
  EXPECT_EQ(fit.messages.size() + static_cast<std::size_t>(fit.dropped_messages), conv.size());

  const ContextFit all = fit_to_context(conv, 100000, 100, 1.0);
  EXPECT_EQ(all.dropped_messages, 0);
  const ContextFit unknown = fit_to_context(conv, 0, 100, 1.0);
  EXPECT_EQ(unknown.dropped_messages, 0);

  const std::vector<ChatMessage> huge = {{"user", std::string(5000, 'x')}};
  EXPECT_FALSE(fit_to_context(huge, 1000, 100, 1.0).fits);
}

}  // namespace
