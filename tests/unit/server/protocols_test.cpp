// The Responses and Anthropic Messages protocols without a model: wire JSON into the internal chat request,
// answers and usage back into each wire format, and the event sequences of their streams.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/api/anthropic_messages.h"
#include "server/api/responses.h"

namespace clawbot::server::api {
namespace {

using nlohmann::json;

constexpr std::uint32_t n_ctx = 512;

// The error a call throws (a ClawbotError), for its kind and the field it names.
template <typename F>
Error error_of(F f) {
  try {
    f();
  } catch (const ClawbotError& e) {
    return e.error();
  }
  ADD_FAILURE() << "no error thrown";
  return {};
}

std::vector<std::string> names(const std::vector<TypedEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.name);
  return out;
}

void append(std::vector<TypedEvent>& all, std::vector<TypedEvent> more) {
  for (auto& e : more) all.push_back(std::move(e));
}

ChatMessage assistant(std::string content, std::vector<ToolCall> calls = {}) {
  ChatMessage m = text_message("assistant", std::move(content));
  m.tool_calls = std::move(calls);
  return m;
}

ChatChoice choice_of(ChatMessage m, ChatFinish finish = ChatFinish::stop) {
  ChatChoice c;
  c.message = std::move(m);
  c.finish = finish;
  return c;
}

ChatUsage usage_of(int prompt, int cached, int completion) {
  ChatUsage u;
  u.prompt_tokens = prompt;
  u.cached_tokens = cached;
  u.completion_tokens = completion;
  return u;
}

ChatDelta text_delta(std::string text) {
  ChatDelta d;
  d.content = std::move(text);
  return d;
}

ChatDelta call_delta(int index, std::string id, std::string name, std::string arguments) {
  ChatDelta d;
  d.tool_calls.push_back({index, std::move(id), std::move(name), std::move(arguments)});
  return d;
}

// ---------------------------------------------------------------- Responses: the request

TEST(ResponsesRequest, TextInputAndInstructionsBecomeSystemAndUser) {
  ResponseStore store;
  const auto r = parse_responses_request(
      json::parse(R"({"input":"Hi","instructions":"Be brief.","max_output_tokens":20,"temperature":0,
                      "top_p":0.5,"stream":true})"),
      n_ctx, store);
  ASSERT_EQ(r.chat.messages.size(), 2u);
  EXPECT_EQ(r.chat.messages[0].role, "system");
  EXPECT_EQ(r.chat.messages[0].content, "Be brief.");
  EXPECT_EQ(r.chat.messages[1].role, "user");
  EXPECT_EQ(r.chat.messages[1].content, "Hi");
  ASSERT_EQ(r.history.size(), 1u);  // instructions are not part of what the store keeps
  EXPECT_EQ(r.chat.common.max_tokens, 20);
  EXPECT_EQ(r.chat.common.sampling.temperature, 0.0f);
  EXPECT_EQ(r.chat.common.sampling.top_p, 0.5f);
  EXPECT_TRUE(r.chat.common.stream);
  EXPECT_TRUE(r.store);
  EXPECT_EQ(r.echo["instructions"], "Be brief.");
  EXPECT_EQ(r.echo["max_output_tokens"], 20);
}

TEST(ResponsesRequest, MaxOutputTokensBeyondTheContextIsTheContext) {
  ResponseStore store;
  const auto r =
      parse_responses_request(json::parse(R"({"input":"Hi","max_output_tokens":100000})"), n_ctx, store);
  EXPECT_EQ(r.chat.common.max_tokens, static_cast<int>(n_ctx));
  const Error e = error_of(
      [&] { parse_responses_request(json::parse(R"({"input":"Hi","max_output_tokens":0})"), n_ctx, store); });
  EXPECT_EQ(e.param, "max_output_tokens");
}

TEST(ResponsesRequest, ItemsBecomeMessagesWithToolCallsAndTheirOutputs) {
  ResponseStore store;
  const auto r = parse_responses_request(json::parse(R"({"input":[
      {"role":"developer","content":"Use tools."},
      {"type":"message","role":"user","content":[{"type":"input_text","text":"Weather "},
                                                 {"type":"input_text","text":"in Paris?"}]},
      {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Let me look."}]},
      {"type":"function_call","call_id":"call_1","name":"weather","arguments":"{\"city\":\"Paris\"}"},
      {"type":"function_call_output","call_id":"call_1","output":"sunny"},
      {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"opaque"}]})"),
                                         n_ctx, store);
  ASSERT_EQ(r.chat.messages.size(), 4u);
  EXPECT_EQ(r.chat.messages[0].role, "system");
  EXPECT_EQ(r.chat.messages[1].content, "Weather in Paris?");
  const ChatMessage& a = r.chat.messages[2];
  EXPECT_EQ(a.role, "assistant");
  EXPECT_EQ(a.content, "Let me look.");  // the message and the call of one turn: one assistant message
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0].id, "call_1");
  EXPECT_EQ(a.tool_calls[0].name, "weather");
  EXPECT_EQ(a.tool_calls[0].arguments, R"({"city":"Paris"})");
  const ChatMessage& t = r.chat.messages[3];
  EXPECT_EQ(t.role, "tool");
  EXPECT_EQ(t.tool_call_id, "call_1");
  EXPECT_EQ(t.tool_name, "weather");
  EXPECT_EQ(t.content, "sunny");
}

TEST(ResponsesRequest, FunctionToolsToolChoiceAndTextFormat) {
  ResponseStore store;
  const auto r = parse_responses_request(json::parse(R"({"input":"x",
      "tools":[{"type":"function","name":"weather","description":"Weather of a city",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}],
      "tool_choice":{"type":"function","name":"weather"},"parallel_tool_calls":false,
      "text":{"format":{"type":"json_schema","name":"out","schema":{"type":"object"},"strict":true}}})"),
                                         n_ctx, store);
  ASSERT_EQ(r.chat.tools.size(), 1u);
  EXPECT_EQ(r.chat.tools[0].name, "weather");
  EXPECT_EQ(r.chat.tools[0].description, "Weather of a city");
  EXPECT_EQ(json::parse(r.chat.tools[0].parameters)["properties"]["city"]["type"], "string");
  EXPECT_EQ(r.chat.tool_choice, ToolChoice::named);
  EXPECT_EQ(r.chat.tool_choice_name, "weather");
  EXPECT_FALSE(r.chat.parallel_tool_calls);
  EXPECT_EQ(r.chat.format.kind, OutputFormat::Kind::json_schema);
  EXPECT_EQ(json::parse(r.chat.format.schema), json::parse(R"({"type":"object"})"));
  const auto required = parse_responses_request(
      json::parse(R"({"input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":"required"})"),
      n_ctx, store);
  EXPECT_EQ(required.chat.tool_choice, ToolChoice::required);
  EXPECT_EQ(required.chat.tools[0].parameters, "{}");
}

TEST(ResponsesRequest, BadInputNamesTheField) {
  ResponseStore store;
  const auto param = [&](const char* body) {
    return error_of([&] { parse_responses_request(json::parse(body), n_ctx, store); }).param;
  };
  EXPECT_EQ(param(R"({})"), "input");
  EXPECT_EQ(param(R"({"input":5})"), "input");
  EXPECT_EQ(param(R"({"input":[]})"), "input");
  EXPECT_EQ(param(R"({"input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]})"),
            "input[0].content[0].type");
  EXPECT_EQ(param(R"({"input":[{"type":"function_call","name":"f","arguments":"{}"}]})"), "input[0].call_id");
  EXPECT_EQ(param(R"({"input":[{"type":"item_reference","id":"x"}]})"), "input[0].type");
  EXPECT_EQ(param(R"({"input":"x","tools":[{"name":"f"}]})"), "tools[0].type");
  EXPECT_EQ(param(R"({"input":"x","tools":[{"type":"function"}]})"), "tools[0].name");
  EXPECT_EQ(
      param(
          R"({"input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}})"),
      "tool_choice.name");
  EXPECT_EQ(param(R"({"input":"x","tool_choice":"sometimes"})"), "tool_choice");
  EXPECT_EQ(param(R"({"input":"x","text":{"format":{"type":"json_schema","name":"n"}}})"),
            "text.format.schema");
  EXPECT_EQ(param(R"({"input":"x","temperature":3})"), "temperature");
  const Error unknown = error_of([&] {
    parse_responses_request(json::parse(R"({"input":"x","previous_response_id":"resp_nope"})"), n_ctx, store);
  });
  EXPECT_EQ(unknown.kind, ErrorKind::not_found);
  EXPECT_EQ(unknown.param, "previous_response_id");
  EXPECT_NE(unknown.message.find("resp_nope"), std::string::npos);
}

TEST(ResponsesRequest, ToolsOfOtherKindsAreSkippedAndNamed) {
  ResponseStore store;
  const auto r = parse_responses_request(json::parse(R"({"input":"x","tools":[{"type":"web_search"},
      {"type":"function","name":"f"},{"type":"custom","name":"apply_patch"}]})"),
                                         n_ctx, store);
  ASSERT_EQ(r.chat.tools.size(), 1u);
  EXPECT_EQ(r.chat.tools[0].name, "f");
  EXPECT_EQ(r.skipped_tools, (std::vector<std::string>{"web_search", "custom"}));
  // A skipped tool cannot be chosen.
  const Error e = error_of([&] {
    parse_responses_request(
        json::parse(
            R"({"input":"x","tools":[{"type":"web_search"}],"tool_choice":{"type":"function","name":"web_search"}})"),
        n_ctx, store);
  });
  EXPECT_EQ(e.param, "tool_choice.name");
  std::vector<std::string> skipped;
  const auto chat =
      parse_anthropic_request(json::parse(R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],
                      "tools":[{"type":"web_search_20250305","name":"web_search"},{"type":"custom","name":"g"}]})"),
                              n_ctx, false, &skipped);
  ASSERT_EQ(chat.tools.size(), 1u);
  EXPECT_EQ(chat.tools[0].name, "g");
  EXPECT_EQ(skipped, std::vector<std::string>{"web_search_20250305"});
}

TEST(ResponsesRequest, PreviousResponseContinuesItsConversationWithoutItsInstructions) {
  ResponseStore store;
  store.put("resp_1", {text_message("user", "Hi"), assistant("Hello!")});
  const auto r = parse_responses_request(
      json::parse(R"({"input":"And then?","previous_response_id":"resp_1","instructions":"Now be brief."})"),
      n_ctx, store);
  ASSERT_EQ(r.chat.messages.size(), 4u);
  EXPECT_EQ(r.chat.messages[0].content, "Now be brief.");
  EXPECT_EQ(r.chat.messages[1].content, "Hi");
  EXPECT_EQ(r.chat.messages[2].content, "Hello!");
  EXPECT_EQ(r.chat.messages[3].content, "And then?");
  EXPECT_EQ(r.history.size(), 3u);
  EXPECT_EQ(r.echo["previous_response_id"], "resp_1");
}

TEST(ResponseStore, KeepsTheMostRecentlyUsedWithinItsBounds) {
  ResponseStore store(2, 1 << 20);
  store.put("a", {text_message("user", "a")});
  store.put("b", {text_message("user", "b")});
  ASSERT_TRUE(store.get("a"));  // a is now the most recently used
  store.put("c", {text_message("user", "c")});
  EXPECT_EQ(store.size(), 2u);
  EXPECT_TRUE(store.get("a"));
  EXPECT_FALSE(store.get("b"));
  EXPECT_TRUE(store.get("c"));

  ResponseStore small(100, 2000);  // bytes: each entry about 1 KB of text
  small.put("x", {text_message("user", std::string(900, 'x'))});
  small.put("y", {text_message("user", std::string(900, 'y'))});
  small.put("z", {text_message("user", std::string(900, 'z'))});
  EXPECT_FALSE(small.get("x"));
  EXPECT_TRUE(small.get("z"));
  small.put("huge", {text_message("user", std::string(5000, 'h'))});  // larger than the store: not kept
  EXPECT_FALSE(small.get("huge"));
  EXPECT_TRUE(small.get("z"));
}

// ---------------------------------------------------------------- Responses: the answer

TEST(ResponsesAnswer, WholeResponseHasItemsUsageAndTheRequestEcho) {
  ResponsesWriter writer("resp_x", "stories", json{{"instructions", "Be brief."}, {"store", true}},
                         1700000000);
  const auto answer =
      writer.whole({choice_of(assistant("Sunny.", {{"call_9", "weather", R"({"city":"Paris"})"}}),
                              ChatFinish::tool_calls)},
                   usage_of(30, 12, 7));
  EXPECT_EQ(answer["id"], "resp_x");
  EXPECT_EQ(answer["object"], "response");
  EXPECT_EQ(answer["status"], "completed");
  EXPECT_EQ(answer["model"], "stories");
  EXPECT_EQ(answer["created_at"], 1700000000);
  EXPECT_EQ(answer["instructions"], "Be brief.");
  ASSERT_EQ(answer["output"].size(), 2u);
  EXPECT_EQ(answer["output"][0]["type"], "message");
  EXPECT_EQ(answer["output"][0]["role"], "assistant");
  EXPECT_EQ(answer["output"][0]["content"][0]["type"], "output_text");
  EXPECT_EQ(answer["output"][0]["content"][0]["text"], "Sunny.");
  EXPECT_EQ(answer["output"][1]["type"], "function_call");
  EXPECT_EQ(answer["output"][1]["call_id"], "call_9");
  EXPECT_EQ(answer["output"][1]["name"], "weather");
  EXPECT_EQ(answer["output"][1]["arguments"], R"({"city":"Paris"})");
  EXPECT_EQ(answer["usage"], json::parse(R"({"input_tokens":30,"input_tokens_details":{"cached_tokens":12},
      "output_tokens":7,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":37})"));
  ASSERT_TRUE(writer.answer());
  EXPECT_EQ(writer.answer()->tool_calls[0].id, "call_9");

  ResponsesWriter cut("resp_y", "stories", json::object(), 0);
  const auto incomplete = cut.whole({choice_of(assistant("Once"), ChatFinish::length)}, usage_of(5, 0, 1));
  EXPECT_EQ(incomplete["status"], "incomplete");
  EXPECT_EQ(incomplete["incomplete_details"]["reason"], "max_output_tokens");
}

TEST(ResponsesAnswer, CallsWithoutIdsGetOnesTheStoreKeeps) {
  ResponsesWriter writer("resp_x", "m", json::object(), 0);
  std::vector<ChatMessage> kept;  // before the answer is written (a client continuing at once finds it)
  writer.on_answer([&](const ChatMessage& m) { kept.push_back(m); });
  const auto answer =
      writer.whole({choice_of(assistant("", {{"", "f", "{}"}}), ChatFinish::tool_calls)}, usage_of(1, 0, 1));
  ASSERT_EQ(answer["output"].size(), 1u);  // no empty message beside a call
  const std::string id = answer["output"][0]["call_id"];
  EXPECT_TRUE(id.starts_with("call_")) << id;
  EXPECT_EQ(writer.answer()->tool_calls[0].id, id);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].role, "assistant");
  EXPECT_EQ(kept[0].tool_calls[0].id, id);
}

TEST(ResponsesStream, TypedEventsInOrderWithSequenceNumbers) {
  ResponsesWriter writer("resp_s", "m", json::object(), 0);
  std::vector<TypedEvent> all;
  append(all, writer.opening(10));
  append(all, writer.pieces(text_delta("Once")));
  append(all, writer.pieces(text_delta(" upon")));
  append(all, writer.pieces(call_delta(0, "call_a", "f", "{\"x\"")));
  append(all, writer.pieces(call_delta(0, "", "", ":1}")));
  const auto final_message = assistant("Once upon", {{"call_a", "f", "{\"x\":1}"}});
  append(all, writer.closing({choice_of(final_message, ChatFinish::tool_calls)}, usage_of(10, 4, 6)));
  EXPECT_EQ(names(all),
            (std::vector<std::string>{
                "response.created", "response.in_progress", "response.output_item.added",
                "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                "response.output_text.done", "response.content_part.done", "response.output_item.done",
                "response.output_item.added", "response.function_call_arguments.delta",
                "response.function_call_arguments.delta", "response.function_call_arguments.done",
                "response.output_item.done", "response.completed"}));
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].data["sequence_number"], i) << all[i].name;
    EXPECT_EQ(all[i].data["type"], all[i].name);
  }
  EXPECT_EQ(all[0].data["response"]["status"], "in_progress");
  EXPECT_EQ(all[6].data["text"], "Once upon");
  EXPECT_EQ(all[6].data["output_index"], 0);
  EXPECT_EQ(all[9].data["output_index"], 1);
  EXPECT_EQ(all[9].data["item"]["call_id"], "call_a");
  EXPECT_EQ(all[9].data["item"]["name"], "f");
  EXPECT_EQ(all[12].data["arguments"], "{\"x\":1}");
  EXPECT_EQ(all[4].data["item_id"], all[2].data["item"]["id"]);
  const json& done = all.back().data["response"];
  EXPECT_EQ(done["status"], "completed");
  ASSERT_EQ(done["output"].size(), 2u);
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "Once upon");
  EXPECT_EQ(done["output"][0]["id"], all[2].data["item"]["id"]);
  EXPECT_EQ(done["output"][1]["arguments"], "{\"x\":1}");
  EXPECT_EQ(done["output"][1]["status"], "completed");
  EXPECT_EQ(done["usage"]["input_tokens_details"]["cached_tokens"], 4);
}

TEST(ResponsesStream, WhatTheFinalParseAddsIsStreamedAtTheEnd) {
  ResponsesWriter writer("resp_s", "m", json::object(), 0);
  std::vector<TypedEvent> all;
  std::string kept;
  writer.on_answer([&](const ChatMessage& m) { kept = m.content; });
  append(all, writer.opening(3));
  append(all, writer.pieces(text_delta("Hi")));
  append(all,
         writer.closing({choice_of(assistant("Hi there", {{"call_z", "g", "{}"}}), ChatFinish::tool_calls)},
                        usage_of(3, 0, 4)));
  std::string text;
  std::string arguments;
  for (const auto& e : all) {
    if (e.name == "response.output_text.delta") text += e.data["delta"].get<std::string>();
    if (e.name == "response.function_call_arguments.delta") arguments += e.data["delta"].get<std::string>();
  }
  EXPECT_EQ(text, "Hi there");
  EXPECT_EQ(arguments, "{}");
  EXPECT_EQ(all.back().data["response"]["output"].size(), 2u);
  EXPECT_EQ(kept, "Hi there");
}

TEST(ResponsesStream, AnEmptyAnswerIsAnEmptyMessageAndLengthIsIncomplete) {
  ResponsesWriter writer("resp_s", "m", json::object(), 0);
  std::vector<TypedEvent> all;
  append(all, writer.opening(3));
  append(all, writer.closing({choice_of(assistant(""), ChatFinish::length)}, usage_of(3, 0, 1)));
  EXPECT_EQ(all.back().name, "response.incomplete");
  ASSERT_EQ(all.back().data["response"]["output"].size(), 1u);
  EXPECT_EQ(all.back().data["response"]["output"][0]["content"][0]["text"], "");
  const TypedEvent error = writer.error_event({ErrorKind::unavailable, "busy", {}, "queue_full"});
  EXPECT_EQ(error.name, "error");
  EXPECT_EQ(error.data["code"], "queue_full");
  EXPECT_EQ(error.data["message"], "busy");
  EXPECT_EQ(error.data["sequence_number"], all.size());
}

// ---------------------------------------------------------------- Anthropic: the request

TEST(AnthropicRequest, SystemBlocksToolUseAndToolResults) {
  const auto chat = parse_anthropic_request(json::parse(R"({"model":"m","max_tokens":64,
      "system":[{"type":"text","text":"Be "},{"type":"text","text":"kind.","cache_control":{"type":"ephemeral"}}],
      "messages":[
        {"role":"user","content":"Weather in Paris?"},
        {"role":"assistant","content":[{"type":"thinking","thinking":"Call it.","signature":"s"},
                                       {"type":"text","text":"Looking."},
                                       {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sunny"}]},
                                  {"type":"text","text":"Thanks."}]}],
      "tools":[{"name":"weather","description":"Weather","input_schema":{"type":"object"}}],
      "tool_choice":{"type":"tool","name":"weather","disable_parallel_tool_use":true},
      "stop_sequences":["END"],"temperature":0,"top_k":5,"thinking":{"type":"enabled","budget_tokens":1024}})"),
                                            n_ctx);
  ASSERT_EQ(chat.messages.size(), 5u);
  EXPECT_EQ(chat.messages[0].role, "system");
  EXPECT_EQ(chat.messages[0].content, "Be kind.");
  EXPECT_EQ(chat.messages[1].role, "user");
  const ChatMessage& a = chat.messages[2];
  EXPECT_EQ(a.role, "assistant");
  EXPECT_EQ(a.content, "Looking.");
  EXPECT_EQ(a.reasoning_content, "Call it.");
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0].id, "toolu_1");
  EXPECT_EQ(json::parse(a.tool_calls[0].arguments), json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(chat.messages[3].role, "tool");
  EXPECT_EQ(chat.messages[3].tool_call_id, "toolu_1");
  EXPECT_EQ(chat.messages[3].tool_name, "weather");
  EXPECT_EQ(chat.messages[3].content, "sunny");
  EXPECT_EQ(chat.messages[4].role, "user");
  EXPECT_EQ(chat.messages[4].content, "Thanks.");
  EXPECT_EQ(chat.common.max_tokens, 64);
  EXPECT_EQ(chat.common.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(chat.common.sampling.top_k, 5);
  EXPECT_EQ(chat.tool_choice, ToolChoice::named);
  EXPECT_EQ(chat.tool_choice_name, "weather");
  EXPECT_FALSE(chat.parallel_tool_calls);
  EXPECT_EQ(chat.enable_thinking, std::optional<bool>(true));
  EXPECT_TRUE(chat.add_generation_prompt);
}

TEST(AnthropicRequest, MaxTokensIsRequiredAndBoundedByTheContext) {
  const Error missing = error_of(
      [] { parse_anthropic_request(json::parse(R"({"messages":[{"role":"user","content":"x"}]})"), n_ctx); });
  EXPECT_EQ(missing.param, "max_tokens");
  EXPECT_NE(missing.message.find("max_tokens"), std::string::npos);
  const auto big = parse_anthropic_request(
      json::parse(R"({"max_tokens":32000,"messages":[{"role":"user","content":"x"}]})"), n_ctx);
  EXPECT_EQ(big.common.max_tokens, static_cast<int>(n_ctx));
  // count_tokens has none.
  EXPECT_NO_THROW(parse_anthropic_request(json::parse(R"({"messages":[{"role":"user","content":"x"}]})"),
                                          n_ctx,
                                          /*count_only=*/true));
}

TEST(AnthropicRequest, ToolChoiceKindsAndPrefill) {
  const auto with = [](const char* choice) {
    return parse_anthropic_request(
        json::parse(std::string(R"({"max_tokens":5,"tools":[{"name":"f","input_schema":{"type":"object"}}],
                                  "messages":[{"role":"user","content":"x"}],"tool_choice":)") +
                    choice + "}"),
        n_ctx);
  };
  EXPECT_EQ(with(R"({"type":"any"})").tool_choice, ToolChoice::required);
  EXPECT_EQ(with(R"({"type":"none"})").tool_choice, ToolChoice::none);
  EXPECT_EQ(with(R"({"type":"auto"})").tool_choice, ToolChoice::automatic);
  const auto prefill = parse_anthropic_request(
      json::parse(
          R"({"max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"Once"}]})"),
      n_ctx);
  EXPECT_FALSE(prefill.add_generation_prompt);
}

TEST(AnthropicRequest, BadInputNamesTheField) {
  const auto param = [](const char* body) {
    return error_of([&] { parse_anthropic_request(json::parse(body), n_ctx); }).param;
  };
  EXPECT_EQ(param(R"({"max_tokens":5})"), "messages");
  EXPECT_EQ(param(R"({"max_tokens":5,"messages":[]})"), "messages");
  EXPECT_EQ(param(R"({"max_tokens":0,"messages":[{"role":"user","content":"x"}]})"), "max_tokens");
  EXPECT_EQ(param(R"({"max_tokens":5,"messages":[{"role":"system","content":"x"}]})"), "messages[0].role");
  EXPECT_EQ(param(R"({"max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x"},
                                          {"type":"image","source":{"type":"base64","data":""}}]}]})"),
            "messages[0].content[1].type");
  EXPECT_EQ(
      param(
          R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"w","input_schema":[]}]})"),
      "tools[0].input_schema");
  EXPECT_EQ(
      param(
          R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"tool","name":"g"}})"),
      "tool_choice.name");
  EXPECT_EQ(param(R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],"stop_sequences":"END"})"),
            "stop_sequences");
  EXPECT_EQ(
      param(R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"maybe"}})"),
      "thinking.type");
  EXPECT_EQ(param(R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":7})"), "system");
}

// ---------------------------------------------------------------- Anthropic: the answer

TEST(AnthropicAnswer, WholeMessageBlocksStopReasonAndUsage) {
  AnthropicWriter writer("msg_1", "stories");
  ChatMessage m = assistant("Calling.", {{"toolu_7", "weather", R"({"city":"Paris"})"}});
  m.reasoning_content = "Hmm.";
  const auto answer = writer.whole({choice_of(m, ChatFinish::tool_calls)}, usage_of(40, 25, 9));
  EXPECT_EQ(answer["id"], "msg_1");
  EXPECT_EQ(answer["type"], "message");
  EXPECT_EQ(answer["role"], "assistant");
  EXPECT_EQ(answer["model"], "stories");
  EXPECT_EQ(answer["stop_reason"], "tool_use");
  EXPECT_TRUE(answer["stop_sequence"].is_null());
  ASSERT_EQ(answer["content"].size(), 3u);
  EXPECT_EQ(answer["content"][0], json::parse(R"({"type":"thinking","thinking":"Hmm.","signature":""})"));
  EXPECT_EQ(answer["content"][1], json::parse(R"({"type":"text","text":"Calling."})"));
  EXPECT_EQ(answer["content"][2],
            json::parse(R"({"type":"tool_use","id":"toolu_7","name":"weather","input":{"city":"Paris"}})"));
  EXPECT_EQ(answer["usage"]["input_tokens"], 15);  // Anthropic counts the cache apart
  EXPECT_EQ(answer["usage"]["cache_read_input_tokens"], 25);
  EXPECT_EQ(answer["usage"]["output_tokens"], 9);
  AnthropicWriter plain("msg_2", "m");
  EXPECT_EQ(plain.whole({choice_of(assistant("x"))}, usage_of(1, 0, 1))["stop_reason"], "end_turn");
  EXPECT_EQ(plain.whole({choice_of(assistant("x"), ChatFinish::length)}, usage_of(1, 0, 1))["stop_reason"],
            "max_tokens");
  ChatMessage thought = assistant("");
  thought.reasoning_content = "Hmm.";
  EXPECT_EQ(plain.whole({choice_of(thought, ChatFinish::length)}, usage_of(1, 0, 1))["content"].size(), 1u);
  EXPECT_EQ(plain.whole({choice_of(assistant(""))}, usage_of(1, 0, 1))["content"],
            json::parse(R"([{"type":"text","text":""}])"));
  const auto cut_call = plain.whole({choice_of(assistant("", {{"toolu_8", "f", "{}"}}), ChatFinish::length)},
                                    usage_of(1, 0, 1));
  EXPECT_EQ(cut_call["stop_reason"], "max_tokens");
}

TEST(AnthropicStream, EventTypesAndBlockIndexes) {
  AnthropicWriter writer("msg_s", "m");
  std::vector<TypedEvent> all;
  append(all, writer.opening(12));
  ChatDelta thinking;
  thinking.reasoning_content = "Hm";
  append(all, writer.pieces(thinking));
  append(all, writer.pieces(text_delta("Once")));
  append(all, writer.pieces(call_delta(0, "toolu_a", "f", "{\"x\":")));
  append(all, writer.pieces(call_delta(0, "", "", "1}")));
  ChatMessage m = assistant("Once", {{"toolu_a", "f", "{\"x\":1}"}});
  m.reasoning_content = "Hm";
  append(all, writer.closing({choice_of(m, ChatFinish::tool_calls)}, usage_of(12, 8, 5)));
  EXPECT_EQ(names(all), (std::vector<std::string>{
                            "message_start", "ping", "content_block_start", "content_block_delta",
                            "content_block_stop", "content_block_start", "content_block_delta",
                            "content_block_stop", "content_block_start", "content_block_delta",
                            "content_block_delta", "content_block_stop", "message_delta", "message_stop"}));
  for (const auto& e : all) EXPECT_EQ(e.data["type"], e.name);
  EXPECT_EQ(all[0].data["message"]["id"], "msg_s");
  EXPECT_EQ(all[0].data["message"]["usage"]["input_tokens"], 12);
  EXPECT_EQ(all[2].data["content_block"]["type"], "thinking");
  EXPECT_EQ(all[3].data["delta"], json::parse(R"({"type":"thinking_delta","thinking":"Hm"})"));
  EXPECT_EQ(all[5].data["index"], 1);
  EXPECT_EQ(all[6].data["delta"], json::parse(R"({"type":"text_delta","text":"Once"})"));
  EXPECT_EQ(all[8].data["index"], 2);
  EXPECT_EQ(all[8].data["content_block"],
            json::parse(R"({"type":"tool_use","id":"toolu_a","name":"f","input":{}})"));
  EXPECT_EQ(all[9].data["delta"], json::parse(R"({"type":"input_json_delta","partial_json":"{\"x\":"})"));
  EXPECT_EQ(all[11].data["index"], 2);
  EXPECT_EQ(all[12].data["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(all[12].data["usage"]["output_tokens"], 5);
  EXPECT_EQ(all[12].data["usage"]["cache_read_input_tokens"], 8);
  EXPECT_EQ(all[12].data["usage"]["input_tokens"], 4);
  ASSERT_TRUE(writer.keep_alive());
  EXPECT_EQ(writer.keep_alive()->name, "ping");
}

TEST(AnthropicErrors, ShapeAndTypePerKind) {
  const auto type_of = [](ErrorKind kind) {
    return anthropic_error({kind, "m", "p", {}})["error"]["type"].get<std::string>();
  };
  EXPECT_EQ(
      anthropic_error({ErrorKind::invalid_request, "'max_tokens' is required", "max_tokens", {}}),
      json::parse(
          R"({"type":"error","error":{"type":"invalid_request_error","message":"'max_tokens' is required"}})"));
  EXPECT_EQ(type_of(ErrorKind::context_exceeded), "invalid_request_error");
  EXPECT_EQ(type_of(ErrorKind::unauthorized), "authentication_error");
  EXPECT_EQ(type_of(ErrorKind::not_found), "not_found_error");
  EXPECT_EQ(type_of(ErrorKind::payload_too_large), "request_too_large");
  EXPECT_EQ(type_of(ErrorKind::rate_limited), "rate_limit_error");
  EXPECT_EQ(type_of(ErrorKind::internal), "api_error");
  EXPECT_EQ(type_of(ErrorKind::unavailable), "overloaded_error");
}

TEST(TypedEvents, SseTextNamesEachEvent) {
  EXPECT_EQ(
      sse_text({{"ping", {{"type", "ping"}}}, {"message_stop", {{"type", "message_stop"}}}}),
      "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

}  // namespace
}  // namespace clawbot::server::api
