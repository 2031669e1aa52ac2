// Ollama's wire format to and from ChatRequest: options, format, messages with tool calls, the final line.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/ollama_format.h"
#include "server/api/ollama.h"

namespace clawbot::server::api {
namespace {

using nlohmann::json;

// The param and message of the 400 that `body` gets from `read`.
template <class Read>
Error refusal(Read read, const json& body) {
  try {
    read(body);
  } catch (const ClawbotError& e) {
    return e.error();
  }
  ADD_FAILURE() << "no error for " << body.dump();
  return {};
}

TEST(OllamaWire, VersionIsNumeric) {
  const std::string v(ollama_format::api_version);
  int major = -1, minor = -1, patch = -1;
  ASSERT_EQ(std::sscanf(v.c_str(), "%d.%d.%d", &major, &minor, &patch), 3) << v;
  EXPECT_GE(minor, 12);  // clients gate features on the version: thinking needs >= 0.9
}

TEST(OllamaWire, ModelNamesWithOrWithoutLatest) {
  EXPECT_TRUE(ollama::names_model("stories260K", "stories260K"));
  EXPECT_TRUE(ollama::names_model("stories260K:latest", "stories260K"));
  EXPECT_TRUE(ollama::names_model("qwen3:latest", "qwen3:latest"));
  EXPECT_TRUE(ollama::names_model("qwen3", "qwen3:latest"));
  EXPECT_FALSE(ollama::names_model("stories260K:7b", "stories260K"));
  EXPECT_FALSE(ollama::names_model("stories", "stories260K"));
  EXPECT_FALSE(ollama::names_model(":latest", "stories260K"));
}

TEST(OllamaWire, OptionsMapToSampling) {
  const json body = {{"options",
                      {{"temperature", 0.2},
                       {"top_p", 0.5},
                       {"top_k", 7},
                       {"min_p", 0.1},
                       {"seed", 42},
                       {"num_predict", 12},
                       {"stop", {"a", "b", "c", "d", "e"}},
                       {"repeat_penalty", 1.3},
                       {"presence_penalty", 0.4},
                       {"frequency_penalty", 0.6},
                       {"repeat_last_n", 32},
                       {"num_ctx", 8192},
                       {"mirostat", 0}}}};
  const CommonRequest r = ollama::options(body, 256);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.2f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.max_tokens, 12);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_FLOAT_EQ(r.sampling.repeat_penalty, 1.3f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.4f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, 0.6f);
  EXPECT_EQ(r.sampling.repeat_last_n, 32);
}

TEST(OllamaWire, NumPredictBeyondTheContextOrNegativeFillsIt) {
  EXPECT_EQ(ollama::options({{"options", {{"num_predict", -1}}}}, 256).max_tokens, 0);
  EXPECT_EQ(ollama::options({{"options", {{"num_predict", -2}}}}, 256).max_tokens, 0);
  EXPECT_EQ(ollama::options({{"options", {{"num_predict", 100000}}}}, 256).max_tokens, 256);
}

TEST(OllamaWire, BadOptionsNameTheirPath) {
  const auto read = [](const json& b) { return ollama::options(b, 256); };
  Error e = refusal(read, {{"options", {{"temperature", "hot"}}}});
  EXPECT_EQ(e.kind, ErrorKind::invalid_request);
  EXPECT_EQ(e.param, "options.temperature");
  EXPECT_NE(e.message.find("'options.temperature'"), std::string::npos) << e.message;
  EXPECT_EQ(refusal(read, {{"options", {{"num_predict", 1.5}}}}).param, "options.num_predict");
  EXPECT_EQ(refusal(read, {{"options", {{"num_ctx", "big"}}}}).param, "options.num_ctx");
  EXPECT_EQ(refusal(read, {{"options", {{"stop", 3}}}}).param, "options.stop");
  EXPECT_EQ(refusal(read, {{"options", "fast"}}).param, "options");
}

TEST(OllamaWire, FormatJsonOrSchema) {
  EXPECT_EQ(ollama::format(json::object()).kind, OutputFormat::Kind::text);
  EXPECT_EQ(ollama::format({{"format", ""}}).kind, OutputFormat::Kind::text);
  EXPECT_EQ(ollama::format({{"format", "json"}}).kind, OutputFormat::Kind::json_object);
  const json schema = {{"type", "object"}, {"properties", {{"age", {{"type", "integer"}}}}}};
  const OutputFormat f = ollama::format({{"format", schema}});
  EXPECT_EQ(f.kind, OutputFormat::Kind::json_schema);
  EXPECT_EQ(json::parse(f.schema), schema);
  EXPECT_EQ(refusal([](const json& b) { return ollama::format(b); }, {{"format", "yaml"}}).param, "format");
}

TEST(OllamaWire, ChatRequestStreamsByDefault) {
  const json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  const ChatRequest r = ollama::chat_request(body, 256);
  EXPECT_TRUE(r.common.stream);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].role, "user");
  EXPECT_EQ(r.messages[0].content, "hi");
  EXPECT_FALSE(ollama::chat_request({{"messages", json::array()}, {"stream", false}}, 256).common.stream);
}

TEST(OllamaWire, ToolsAndToolCallsInHistory) {
  const json body = {
      {"messages",
       {{{"role", "user"}, {"content", "weather in Paris?"}},
        {{"role", "assistant"},
         {"content", ""},
         {"thinking", "look it up"},
         {"tool_calls", {{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}}}},
        {{"role", "tool"}, {"content", "22C"}, {"tool_name", "get_weather"}}}},
      {"tools",
       {{{"type", "function"},
         {"function",
          {{"name", "get_weather"},
           {"description", "weather of a city"},
           {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}}},
      {"think", true},
      {"keep_alive", "5m"}};
  const ChatRequest r = ollama::chat_request(body, 256);
  ASSERT_EQ(r.messages.size(), 3u);
  ASSERT_EQ(r.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(r.messages[1].tool_calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(r.messages[1].reasoning_content, "look it up");
  EXPECT_EQ(r.messages[2].role, "tool");
  EXPECT_EQ(r.messages[2].tool_name, "get_weather");
  ASSERT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "weather of a city");
  EXPECT_EQ(json::parse(r.tools[0].parameters)["properties"]["city"]["type"], "string");
  EXPECT_EQ(r.enable_thinking, std::optional<bool>(true));
}

TEST(OllamaWire, BadChatFieldsNameTheField) {
  const auto read = [](const json& b) { return ollama::chat_request(b, 256); };
  EXPECT_EQ(refusal(read, {{"messages", "hello"}}).param, "messages");
  EXPECT_EQ(refusal(read, {{"messages", {{{"role", "robot"}, {"content", "x"}}}}}).param, "messages[0].role");
  EXPECT_EQ(refusal(read, {{"messages", {{{"role", "user"}, {"content", 5}}}}}).param, "messages[0].content");
  EXPECT_EQ(refusal(read, {{"messages", {{{"role", "user"}, {"content", "x"}, {"images", {"aGk="}}}}}}).param,
            "messages[0].images");
  EXPECT_EQ(refusal(read, {{"messages",
                            {{{"role", "assistant"},
                              {"tool_calls", {{{"function", {{"name", "f"}, {"arguments", 3}}}}}}}}}})
                .param,
            "messages[0].tool_calls[0].function.arguments");
  EXPECT_EQ(refusal(read, {{"tools", {{{"function", {{"description", "no name"}}}}}}}).param,
            "tools[0].function.name");
  EXPECT_EQ(refusal(read, {{"think", "maybe"}}).param, "think");
  EXPECT_EQ(refusal(read, {{"stream", "yes"}}).param, "stream");
  EXPECT_EQ(refusal(read, {{"keep_alive", json::array()}}).param, "keep_alive");
}

TEST(OllamaWire, GenerateIsSystemAndOneTurn) {
  const ChatRequest r = ollama::generate_request(
      {{"prompt", "Why is the sky blue?"}, {"system", "Be brief."}, {"stream", false}, {"format", "json"}},
      256);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].role, "user");
  EXPECT_EQ(r.messages[1].content, "Why is the sky blue?");
  EXPECT_FALSE(r.common.stream);
  EXPECT_EQ(r.format.kind, OutputFormat::Kind::json_object);
}

TEST(OllamaWire, ToolCallArgumentsAreAnObject) {
  ChatMessage m;
  m.role = "assistant";
  m.tool_calls.push_back({"call_1", "get_weather", R"({"city":"Paris"})"});
  m.tool_calls.push_back({"", "broken", "not json"});
  const json out = ollama::message_json(m);
  EXPECT_EQ(out["tool_calls"][0]["function"]["arguments"], json({{"city", "Paris"}}));
  EXPECT_EQ(out["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(out["tool_calls"][0]["id"], "call_1");
  EXPECT_EQ(out["tool_calls"][1]["function"]["arguments"], "not json");  // the model's text as it was
  EXPECT_FALSE(out.contains("thinking"));
}

TEST(OllamaWire, FinalFieldsInNanoseconds) {
  ChatUsage usage;
  usage.prompt_tokens = 11;
  usage.completion_tokens = 5;
  usage.prompt_ms = 2.5;
  usage.generation_ms = 10;
  const json f = ollama::final_fields(ChatFinish::length, usage, 123456789);
  EXPECT_EQ(f["done"], true);
  EXPECT_EQ(f["done_reason"], "length");
  EXPECT_EQ(f["total_duration"], 123456789);
  EXPECT_EQ(f["prompt_eval_count"], 11);
  EXPECT_EQ(f["prompt_eval_duration"], 2500000);
  EXPECT_EQ(f["eval_count"], 5);
  EXPECT_EQ(f["eval_duration"], 10000000);
  EXPECT_EQ(ollama::final_fields(ChatFinish::tool_calls, usage, 0)["done_reason"], "stop");
}

TEST(OllamaWire, ModelDetailsAsOllamaShowsThem) {
  EXPECT_EQ(ollama_format::parameter_size(8'030'261'248ull), "8.0B");
  EXPECT_EQ(ollama_format::parameter_size(494'032'768ull), "494.03M");
  EXPECT_EQ(ollama_format::parameter_size(292'000ull), "292.00K");
  EXPECT_EQ(ollama::quantization_level(15), "Q4_K_M");
  EXPECT_EQ(ollama::quantization_level(0), "F32");
  EXPECT_EQ(ollama::quantization_level(-1), "unknown");
  EXPECT_EQ(ollama_format::rfc3339(
                std::chrono::system_clock::time_point(std::chrono::nanoseconds(1'000'000'001'000))),
            "1970-01-01T00:16:40.000001000Z");
}

}  // namespace
}  // namespace clawbot::server::api
