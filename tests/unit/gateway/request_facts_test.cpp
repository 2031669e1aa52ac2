// The proxy's one-pass reading of request bodies and its targeted scan for usage.
#include "gateway/request_facts.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/json_read.h"
#include "gateway/door/door.h"
#include "gateway/model_list.h"
#include "gateway/token_account.h"

namespace clawbot::gateway {
namespace {

TEST(GatewayRequestFacts, ReadsModelStreamAndStreamOptions) {
  auto f =
      scan_request(R"({"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[]})");
  EXPECT_TRUE(f.valid);
  EXPECT_EQ(f.model, "m1");
  EXPECT_TRUE(f.stream);
  EXPECT_TRUE(f.has_stream_options);
  EXPECT_TRUE(f.include_usage);
  f = scan_request(R"({"model":"m2","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_FALSE(f.stream);
  EXPECT_FALSE(f.has_stream_options);
  // A nested "model" or "stream" (inside a message) is not the request's.
  f = scan_request(
      R"({"messages":[{"role":"user","content":"x","model":"no","stream":true}],"model":"yes"})");
  EXPECT_EQ(f.model, "yes");
  EXPECT_FALSE(f.stream);
}

TEST(GatewayRequestFacts, RejectsWhatIsNotOneObject) {
  EXPECT_FALSE(scan_request("").valid);
  EXPECT_FALSE(scan_request("[1,2]").valid);
  EXPECT_FALSE(scan_request(R"({"model":"m")").valid);
  EXPECT_FALSE(scan_request("not json").valid);
  EXPECT_EQ(scan_request(R"({"model":"m")").affinity, 0u);
}

TEST(GatewayRequestFacts, ChecksTheJsonSyntaxOfTheWholeBody) {
  EXPECT_TRUE(
      scan_request(R"( {"a":[1,-2.5e3,0,true,false,null,{"b":{}},[]],"c":"\"\\\/\b\f\n\r\t\u00e9"} )").valid);
  for (const char* bad : {R"({"a":1} x)", R"({"a":01})", R"({"a":1.})", R"({"a":-})", R"({"a":tru})",
                          R"({"a":"\x"})", R"({"a":"\u12"})", "{\"a\":\"tab\there\"}", R"({"a":[1,]})",
                          R"({"a":1,})", R"({a:1})", R"({"a" 1})", R"({"a":[1 2]})"})
    EXPECT_FALSE(scan_request(bad).valid) << bad;
  // Deep nesting is refused, not a stack overflow.
  EXPECT_FALSE(scan_request("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}").valid);
}

TEST(GatewayRequestFacts, DecodesEscapedStringsAndKeys) {
  auto f = scan_request(R"({"mod\u0065l":"m\u0031\ud83d\ude00","stream":true})");
  EXPECT_TRUE(f.valid);
  EXPECT_EQ(f.model, "m1\xf0\x9f\x98\x80");
  EXPECT_TRUE(f.stream);
  // A key the gateway reads, twice, is refused: the gateway and the node could read different values.
  const auto twice = scan_request(R"({"model":"a","mod\u0065l":"b"})");
  EXPECT_FALSE(twice.valid);
  ASSERT_TRUE(twice.refusal);
  EXPECT_EQ(twice.refusal->code, "duplicate_key");
  EXPECT_EQ(twice.refusal->param, "model");
  // Other keys may repeat (the JSON reader keeps the last).
  EXPECT_TRUE(scan_request(R"({"temperature":1,"temperature":2})").valid);
  // Only the top level's stream_options counts.
  f = scan_request(R"({"x":{"stream_options":{"include_usage":true}},"stream":true})");
  EXPECT_FALSE(f.has_stream_options);
  EXPECT_FALSE(f.include_usage);
}

TEST(GatewayRequestFacts, AffinityIgnoresWhiteSpaceOutsideStrings) {
  const auto compact = scan_request(R"({"model":"m","messages":[{"role":"user","content":"a b"}]})");
  const auto spaced = scan_request(
      "{ \"model\" : \"m\",\n \"messages\" : [ { \"role\": \"user\", \"content\": \"a b\" } ] }");
  const auto inner = scan_request(R"({"model":"m","messages":[{"role":"user","content":"ab"}]})");
  EXPECT_EQ(compact.affinity, spaced.affinity);
  EXPECT_NE(compact.affinity, inner.affinity);
}

TEST(GatewayRequestFacts, AffinityFollowsTheLeadingMessagesNotTheLaterTurns) {
  const std::string lead =
      R"({"role":"system","content":"Be brief."},{"role":"user","content":"Tell me about Kyoto"})";
  const auto turn1 = scan_request(R"({"model":"m","messages":[)" + lead + "]}");
  const auto turn3 =
      scan_request(R"({"model":"m","messages":[)" + lead +
                   R"(,{"role":"assistant","content":"It is old."},{"role":"user","content":"More"}]})");
  const auto other = scan_request(R"({"model":"m","messages":[{"role":"system","content":"Be brief."},)"
                                  R"({"role":"user","content":"Tell me about Osaka"}]})");
  const auto other_model = scan_request(R"({"model":"n","messages":[)" + lead + "]}");
  EXPECT_NE(turn1.affinity, 0u);
  EXPECT_EQ(turn1.affinity, turn3.affinity);
  EXPECT_NE(turn1.affinity, other.affinity);
  EXPECT_NE(turn1.affinity, other_model.affinity);
  // Events are separated: moving text between two fields changes the key.
  EXPECT_NE(scan_request(R"({"messages":[{"a":"bc"}]})").affinity,
            scan_request(R"({"messages":[{"ab":"c"}]})").affinity);
  // A session header names the conversation outright.
  EXPECT_EQ(scan_request(R"({"messages":[{"role":"user","content":"a"}]})", "s1").affinity,
            scan_request(R"({"messages":[{"role":"user","content":"b"}]})", "s1").affinity);
  // Completions: the start of the prompt; no messages, prompt or user: none.
  EXPECT_NE(scan_request(R"({"prompt":"Once upon a time"})").affinity, 0u);
  EXPECT_EQ(scan_request(R"({"model":"m","input":"embed me"})").affinity, 0u);
}

TEST(GatewayRequestFacts, AddsUsageToAStreamRequestAsValidJson) {
  for (const std::string body : {R"({"stream":true,"model":"m"})", R"(  {"stream":true})", "{}", "{ }"}) {
    const auto out = nlohmann::json::parse(with_usage_requested(body));
    EXPECT_EQ(out["stream_options"]["include_usage"], true) << body;
  }
  const auto out = nlohmann::json::parse(with_usage_requested(R"({"stream":true,"model":"m"})"));
  EXPECT_EQ(out["model"], "m");
  EXPECT_EQ(out["stream"], true);
}

TEST(GatewayRequestFacts, FindsUsageWhereverItIsAndOnlyAsAKey) {
  std::int64_t in = -1, out = -1;
  ASSERT_TRUE(find_usage(
      R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}})", in, out));
  EXPECT_EQ(in, 12);
  EXPECT_EQ(out, 34);
  // Nested details and spacing.
  in = out = -1;
  ASSERT_TRUE(find_usage(R"({"usage" : { "prompt_tokens" : 5, "prompt_tokens_details": {"cached_tokens": 3},)"
                         R"( "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 1}}})",
                         in, out));
  EXPECT_EQ(in, 5);
  EXPECT_EQ(out, 7);
  // "usage" inside a string, and a null usage, are not usage.
  in = out = -1;
  EXPECT_FALSE(find_usage(R"({"content":"the \"usage\": {\"prompt_tokens\": 9}"})", in, out));
  EXPECT_FALSE(find_usage(R"({"usage":null})", in, out));
  EXPECT_FALSE(find_usage(R"({"usage":{"prompt_tokens":1.5}})", in, out));
  EXPECT_FALSE(find_usage(R"({"usage":{"prompt_tokens":3)", in, out));  // cut off
  EXPECT_EQ(in, -1);
  EXPECT_EQ(out, -1);
}

// Issue 19, item 8: usage is counted for every protocol the gateway passes through.
TEST(GatewayRequestFacts, FindsUsageOfResponsesAnthropicAndOllama) {
  std::int64_t in = -1, out = -1;
  // Responses, whole and in its response.completed event (details beside the counts).
  ASSERT_TRUE(find_usage(R"({"id":"resp_1","object":"response","output":[],"usage":{"input_tokens":21,)"
                         R"("input_tokens_details":{"cached_tokens":4},"output_tokens":8,)"
                         R"("output_tokens_details":{"reasoning_tokens":0},"total_tokens":29}})",
                         in, out));
  EXPECT_EQ(in, 21);
  EXPECT_EQ(out, 8);
  in = out = -1;
  ASSERT_TRUE(
      find_usage(R"({"type":"response.completed","sequence_number":9,"response":{"status":"completed",)"
                 R"("usage":{"input_tokens":3,"output_tokens":5,"total_tokens":8}}})",
                 in, out));
  EXPECT_EQ(in, 3);
  EXPECT_EQ(out, 5);
  // response.created: usage null, nothing counted.
  in = out = -1;
  EXPECT_FALSE(find_usage(R"({"type":"response.created","response":{"usage":null}})", in, out));
  // Anthropic: a whole message; then a stream's message_start (input) and message_delta (output so far),
  // each count taken where it comes and the other kept.
  ASSERT_TRUE(find_usage(R"({"type":"message","content":[{"type":"text","text":"hi"}],"usage":)"
                         R"({"input_tokens":12,"cache_read_input_tokens":0,"output_tokens":6}})",
                         in, out));
  EXPECT_EQ(in, 12);
  EXPECT_EQ(out, 6);
  // Anthropic's prompt tokens read from the cache are counted apart from input_tokens: the prompt is both.
  in = out = -1;
  ASSERT_TRUE(find_usage(R"({"type":"message_start","message":{"id":"msg_2","content":[],"usage":)"
                         R"({"input_tokens":1,"cache_creation_input_tokens":2,"cache_read_input_tokens":44,)"
                         R"("output_tokens":0}}})",
                         in, out));
  EXPECT_EQ(in, 47);
  in = out = -1;
  ASSERT_TRUE(find_usage(R"({"type":"message_start","message":{"id":"msg_1","content":[],)"
                         R"("usage":{"input_tokens":17,"output_tokens":0}}})",
                         in, out));
  ASSERT_TRUE(find_usage(
      R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}})", in, out));
  EXPECT_EQ(in, 17);
  EXPECT_EQ(out, 9);
  // Ollama: the last line of a stream, or a whole answer; pieces before it carry no counts.
  in = out = -1;
  EXPECT_FALSE(find_usage(
      R"({"model":"m","message":{"role":"assistant","content":"eval_count"},"done":false})", in, out));
  ASSERT_TRUE(
      find_usage(R"({"model":"m","created_at":"2025-10-01T00:00:00Z","message":{"role":"assistant",)"
                 R"("content":""},"done":true,"done_reason":"stop","total_duration":100,)"
                 R"("load_duration":0,"prompt_eval_count":26,"prompt_eval_duration":5,"eval_count":13,)"
                 R"("eval_duration":7})",
                 in, out));
  EXPECT_EQ(in, 26);
  EXPECT_EQ(out, 13);
  in = out = -1;
  EXPECT_FALSE(find_usage(R"({"response":"the \"eval_count\": 5 of it","done":false})", in, out));
  EXPECT_EQ(out, -1);
}

TEST(GatewayRequestFacts, TellsEventsOfEveryProtocolThatCarryText) {
  EXPECT_TRUE(carries_generated_text(R"({"type":"response.output_text.delta","delta":"Hi"})"));
  EXPECT_TRUE(
      carries_generated_text(R"({"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}})"));
  EXPECT_TRUE(carries_generated_text(
      R"({"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{\"a"}})"));
  EXPECT_TRUE(
      carries_generated_text(R"({"model":"m","message":{"role":"assistant","content":"Hi"},"done":false})"));
  EXPECT_TRUE(carries_generated_text(R"({"model":"m","response":"Hi","done":false})"));
  EXPECT_TRUE(
      carries_generated_text(R"({"model":"m","message":{"role":"assistant","content":"","thinking":"h"}})"));
  EXPECT_FALSE(carries_generated_text(R"({"type":"response.created","response":{"id":"r"}})"));
  EXPECT_FALSE(carries_generated_text(R"({"type":"message_delta","delta":{"stop_reason":"end_turn"}})"));
  EXPECT_FALSE(carries_generated_text(R"({"type":"message_start","message":{"content":[]}})"));
  EXPECT_FALSE(carries_generated_text(R"({"model":"m","response":"","done":true})"));
}

TEST(GatewayRequestFacts, ResponsesInputGivesTheConversationItsAffinity) {
  const auto affinity = [](const std::string& input) {
    const auto facts = scan_request(R"({"model":"m","input":)" + input + "}");
    EXPECT_TRUE(facts.valid) << input;
    return facts.affinity;
  };
  const std::string first = R"({"role":"system","content":"be brief"},{"role":"user","content":"hi"})";
  const auto turn1 = affinity("[" + first + "]");
  const auto turn2 =
      affinity("[" + first + R"(,{"role":"assistant","content":"hello"},{"role":"user","content":"more"}])");
  EXPECT_NE(turn1, 0u);
  EXPECT_EQ(turn1, turn2);
  EXPECT_NE(turn1, affinity(R"([{"role":"user","content":"another conversation"}])"));
  EXPECT_EQ(affinity(R"(["embed", "these"])"), 0u);  // an embedding request's strings: no conversation
}

TEST(GatewayRequestFacts, ReadsResponsesMaxOutputTokensAndWhetherStreamIsGiven) {
  auto facts = scan_request(R"({"model":"m","input":"hi","max_output_tokens":77})");
  ASSERT_TRUE(facts.valid);
  EXPECT_EQ(facts.max_tokens, 77);
  EXPECT_FALSE(facts.stream_given);
  facts = scan_request(R"({"model":"m","stream":false})");
  EXPECT_TRUE(facts.stream_given);
  EXPECT_FALSE(facts.stream);
  facts = scan_request(R"({"model":"m","stream":null})");
  EXPECT_FALSE(facts.stream_given);
}

// Issue 16, items 1-2: what no node may accept is refused at the gateway with a 400 that names it.
TEST(GatewayRequestFacts, RefusesWhatTheJsonReaderRefusesNamingTheProblem) {
  const auto code_of = [](const std::string& body) {
    const auto f = scan_request(body);
    EXPECT_FALSE(f.valid) << body.substr(0, 80);
    return f.refusal ? f.refusal->code : std::string("(no refusal)");
  };
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(code_of(deep), "json_too_deep");
  EXPECT_EQ(code_of(R"({"model":"m","messages":)" + deep + "}"), "json_too_deep");
  EXPECT_NE(scan_request(deep).refusal->message.find("128"), std::string::npos);
  // 128 levels are fine, 129 are not (the top-level object is level 1).
  EXPECT_TRUE(scan_request("{\"a\":" + std::string(127, '[') + std::string(127, ']') + "}").valid);
  EXPECT_EQ(code_of("{\"a\":" + std::string(128, '[') + std::string(128, ']') + "}"), "json_too_deep");
  EXPECT_EQ(code_of(R"({"temperature":1e999})"), "invalid_json");
  EXPECT_NE(scan_request(R"({"temperature":1e999})").refusal->message.find("1e999"), std::string::npos);
  EXPECT_EQ(code_of(R"({"a":-1e400})"), "invalid_json");
  EXPECT_EQ(code_of("{\"a\":1" + std::string(400, '0') + "}"), "invalid_json");
  EXPECT_TRUE(scan_request(R"({"a":1e-999,"b":1e308,"c":123456789012345678901234567890})").valid);
  EXPECT_EQ(code_of(R"({"a":"\ud800"})"), "invalid_json");         // a lone high surrogate
  EXPECT_EQ(code_of(R"({"a":"\ud800\u0041"})"), "invalid_json");   // not followed by a low one
  EXPECT_EQ(code_of(R"({"a":"\udc00"})"), "invalid_json");         // a lone low surrogate
  EXPECT_EQ(code_of("{\"a\":\"\xff\"}"), "invalid_json");          // not UTF-8
  EXPECT_EQ(code_of("{\"a\":\"\xc0\xaf\"}"), "invalid_json");      // overlong
  EXPECT_EQ(code_of("{\"a\":\"\xed\xa0\x80\"}"), "invalid_json");  // an encoded surrogate
  EXPECT_EQ(code_of("{\"a\":\"\xe2\x82\"}"), "invalid_json");      // cut short
  EXPECT_TRUE(scan_request("{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}").valid);
  EXPECT_EQ(code_of("[1,2]"), "");  // valid JSON, not an object: a plain 400
  EXPECT_NE(scan_request("[1,2]").refusal->message.find("must be a JSON object"), std::string::npos);
  // A byte order mark is skipped, as the JSON reader does.
  EXPECT_TRUE(scan_request("\xef\xbb\xbf{\"model\":\"m\"}").valid);
}

// The scanner accepts exactly what the JSON reader accepts (for objects): the gateway never forwards what a
// node refuses, nor refuses what a node takes.
TEST(GatewayRequestFacts, AcceptsExactlyWhatTheJsonReaderAccepts) {
  const std::vector<std::string> bodies = {"{}",
                                           " { } ",
                                           R"({"a":[1,-2.5e3,0,true,false,null,{"b":{}},[]]})",
                                           R"({"a":"\u00e9\ud83d\ude00"})",
                                           R"({"a":01})",
                                           R"({"a":1.})",
                                           R"({"a":.5})",
                                           R"({"a":+1})",
                                           R"({"a":-})",
                                           R"({"a":1e})",
                                           R"({"a":0x1})",
                                           R"({"a":NaN})",
                                           R"({"a":Infinity})",
                                           R"({"a":'x'})",
                                           R"({"a":"\x"})",
                                           R"({"a":"\u12"})",
                                           "{\"a\":\"tab\there\"}",
                                           R"({"a":[1,]})",
                                           R"({"a":1,})",
                                           R"({a:1})",
                                           R"({"a" 1})",
                                           R"({"a":[1 2]})",
                                           R"({"a":1} x)",
                                           R"({"a":1}{})",
                                           "{\"a\":\"\\ud800\"}",
                                           "{\"a\":\"\\udfff\\ud800\"}",
                                           "{\"a\":\"\xf4\x90\x80\x80\"}",
                                           "{\"a\":\"\xf0\x90\x80\x80\"}",
                                           "{\"a\":\"\x7f\"}",
                                           "{\"a\":1e999}",
                                           "{\"a\":1E+2,\"b\":-0,\"c\":-0.0e-0}",
                                           "{\"a\":\"\xef\xbf\xbf\"}",
                                           "\xef\xbb\xbf{}",
                                           "\xef\xbb{}",
                                           "{\"stream\":true,\"stream_options\":null}",
                                           "{\"a\":/*c*/1}",
                                           "{\"a\":1}\n\t\r "};
  for (const auto& body : bodies) {
    const bool reader = json_read::parse(body).value.has_value();
    EXPECT_EQ(scan_request(body).valid, reader) << body;
  }
}

// Issue 16, items 14-15: the fields the gateway reads, and acts on, must mean one thing.
TEST(GatewayRequestFacts, RefusesMistypedOrDuplicatedStreamFieldsNamingThem) {
  auto f = scan_request(R"({"stream":true,"stream_options":{"include_usage":"x"}})");
  ASSERT_TRUE(f.refusal);
  EXPECT_EQ(f.refusal->kind, ErrorKind::invalid_request);
  EXPECT_EQ(f.refusal->param, "stream_options.include_usage");
  EXPECT_EQ(f.refusal->message, R"('stream_options.include_usage' must be a boolean, got "x")");
  f = scan_request(R"({"stream":"yes"})");
  ASSERT_TRUE(f.refusal);
  EXPECT_EQ(f.refusal->param, "stream");
  f = scan_request(R"({"stream":true,"stream_options":[1]})");
  ASSERT_TRUE(f.refusal);
  EXPECT_EQ(f.refusal->param, "stream_options");
  f = scan_request(R"({"stream":true,"stream_options":{},"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(f.refusal);
  EXPECT_EQ(f.refusal->code, "duplicate_key");
  EXPECT_EQ(f.refusal->param, "stream_options");
  f = scan_request(R"({"stream":true,"stream_options":{"include_usage":false,"include_usage":true}})");
  ASSERT_TRUE(f.refusal);
  EXPECT_EQ(f.refusal->param, "stream_options.include_usage");
  // null is "not set".
  f = scan_request(R"({"stream":null,"stream_options":{"include_usage":null}})");
  EXPECT_TRUE(f.valid);
  EXPECT_FALSE(f.stream);
  EXPECT_FALSE(f.include_usage);
}

TEST(GatewayRequestFacts, ReadsMaxTokensAndChoices) {
  auto f = scan_request(R"({"max_tokens":300,"n":2})");
  EXPECT_EQ(f.max_tokens, 300);
  EXPECT_EQ(f.choices, 2);
  EXPECT_EQ(scan_request(R"({"max_completion_tokens":7})").max_tokens, 7);
  EXPECT_EQ(scan_request(R"({"n_predict":9})").max_tokens, 9);
  f = scan_request(R"({"max_tokens":-1,"n":1000})");
  EXPECT_EQ(f.max_tokens, 0);
  EXPECT_EQ(f.choices, 1);
  EXPECT_EQ(scan_request(R"({"max_tokens":"lots"})").max_tokens, 0);
  EXPECT_EQ(scan_request(R"({"max_tokens":1.5e2})").max_tokens, 0);
}

TEST(GatewayRequestFacts, RewritesUsageAndModelInPlaceAsValidJson) {
  struct Case {
    std::string body;
    bool usage;
    std::string model;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"stream":true,"model":"m"})", true, ""},
           {R"( {"stream":true} )", true, ""},
           {R"({"stream":true,"stream_options":null})", true, ""},
           {R"({"stream":true,"stream_options":{}})", true, ""},
           {R"({"stream":true,"stream_options":{ }})", true, ""},
           {R"({"stream":true,"stream_options":{"x":1}})", true, ""},
           {R"({"stream":true,"stream_options":{"include_usage":false}})", true, ""},
           {R"({"stream":true,"stream_options":{"include_usage":null},"model":"m"})", true, "d\"x"},
           {R"({"model" : "gpt-4", "messages":[]})", false, "small"},
       }) {
    const auto facts = scan_request(c.body);
    ASSERT_TRUE(facts.valid) << c.body;
    const std::string out = rewritten(c.body, facts, c.usage, c.model);
    const auto parsed = nlohmann::json::parse(out);
    if (c.usage) {
      EXPECT_EQ(parsed["stream_options"]["include_usage"], true) << out;
    }
    if (!c.model.empty()) {
      EXPECT_EQ(parsed["model"], c.model) << out;
    } else if (facts.model_value.found()) {
      EXPECT_EQ(parsed["model"], facts.model) << out;
    }
    EXPECT_TRUE(scan_request(out).valid) << out;
  }
  // Nothing asked: the body as it was.
  const std::string body = R"({"stream":true,"stream_options":{"include_usage":true}})";
  EXPECT_EQ(rewritten(body, scan_request(body), true, ""), body);
}

TEST(GatewayRequestFacts, TellsChunksThatCarryGeneratedText) {
  EXPECT_TRUE(carries_generated_text(R"({"choices":[{"index":0,"delta":{"content":"Hi"}}]})"));
  EXPECT_TRUE(carries_generated_text(R"({"choices":[{"text" : " a","index":0}]})"));
  EXPECT_TRUE(carries_generated_text(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})"));
  EXPECT_TRUE(carries_generated_text(R"({"choices":[{"delta":{"tool_calls":[{"index":0}]}}]})"));
  EXPECT_TRUE(carries_generated_text(R"({"content":"x","stop":false})"));  // /infill
  EXPECT_FALSE(carries_generated_text(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})"));
  EXPECT_FALSE(carries_generated_text(R"({"choices":[{"delta":{},"finish_reason":"stop"}]})"));
  EXPECT_FALSE(carries_generated_text(R"({"choices":[],"usage":{"prompt_tokens":1}})"));
  EXPECT_FALSE(carries_generated_text(R"({"choices":[{"delta":{"content":null}}]})"));
  EXPECT_FALSE(carries_generated_text(R"({"type":"text"})"));
}

// Issue 16, item 3: an upstream's model list is untrusted input.
TEST(GatewayModelList, ReadsOnlyTheModelsFactsWithinBounds) {
  auto list = read_model_list(
      R"({"object":"list","data":[{"id":"a","object":"model","owned_by":"me","created":5,)"
      R"("meta":{"n_ctx":2048,"deep":{"x":1},"name":"n"},"extra":[[[1]]]},{"id":7},{"no":"id"},{"id":"b"}]})");
  ASSERT_EQ(list.error, "");
  EXPECT_EQ(list.ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(list.entries[0].dump(),
            R"({"created":5,"id":"a","meta":{"n_ctx":2048,"name":"n"},"object":"model","owned_by":"me"})");
  const std::string deep = R"({"data":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  list = read_model_list(deep);
  EXPECT_NE(list.error.find("json_too_deep"), std::string::npos) << list.error;
  EXPECT_TRUE(list.ids.empty());
  list = read_model_list(R"({"data":[{"id":"x"}]})" + std::string(max_model_list_bytes, ' '));
  EXPECT_NE(list.error.find("json_too_large"), std::string::npos) << list.error;
  EXPECT_NE(read_model_list("[]").error.find("no \"data\" array"), std::string::npos);
  EXPECT_NE(read_model_list(R"({"data":{}})").error.find("no \"data\" array"), std::string::npos);
  EXPECT_EQ(read_model_list(R"({"data":[{"id":")" + std::string(600, 'x') + R"("}]})").ids.size(), 0u);
}

TEST(GatewayModelList, ReadsTheMemoryAnUpstreamReportsNumbersOnly) {
  EXPECT_EQ(
      read_reported_memory(R"({"status":"ok","memory":{"total_bytes":8,"used_bytes":3,"name":"x","d":{}}})")
          .dump(),
      R"({"total_bytes":8,"used_bytes":3})");
  EXPECT_TRUE(read_reported_memory(R"({"status":"ok"})").is_null());
  EXPECT_TRUE(read_reported_memory(R"({"memory":{"name":"x"}})").is_null());
  EXPECT_TRUE(read_reported_memory("not json").is_null());
  EXPECT_TRUE(
      read_reported_memory(R"({"memory":)" + std::string(100000, '[') + std::string(100000, ']') + "}")
          .is_null());
}

// Issue 16, item 7: tokens are counted as they stream, and settled to what was used.
TEST(GatewayTokenAccount, CountsStreamedChunksAndSettlesToUsageOrToTheCount) {
  const auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1000);
  door::RateLimiter limiter;
  const std::string body(40, ' ');  // a prompt estimate of 11 tokens
  const auto facts = scan_request(R"({"max_tokens":20})");
  {
    TokenAccount account;
    account.open(limiter, "k", 100);
    EXPECT_EQ(account.reserve(facts, body.size(), true, now).reserved, 31);
    EXPECT_FALSE(account.on_event(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})"));
    for (int i = 0; i < 5; ++i) EXPECT_FALSE(account.on_event(R"({"choices":[{"delta":{"content":"a"}}]})"));
    EXPECT_EQ(account.completion_tokens(), 5);
    EXPECT_EQ(account.prompt_tokens(), 0);
    // The client leaves before the usage chunk: charged what it got and the prompt estimate.
    account.settle(now);
    account.settle(now);  // once only
  }
  EXPECT_EQ(limiter.reserve("k", 100, 1000, now).reserved, 100 - 16);
  limiter.settle("k", 84, 0, now);
  {
    TokenAccount account;
    account.open(limiter, "k", 100);
    account.reserve(facts, body.size(), true, now);
    EXPECT_FALSE(account.on_event(R"({"choices":[{"delta":{"content":"a"}}]})"));
    EXPECT_TRUE(account.on_event(R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}})"));
    EXPECT_FALSE(account.on_event("[DONE]"));
    EXPECT_EQ(account.prompt_tokens(), 3);
    EXPECT_EQ(account.completion_tokens(), 2);
    account.settle(now);
  }
  EXPECT_EQ(limiter.reserve("k", 100, 1000, now).reserved, 100 - 16 - 5);
}

// Issue 19, item 8: Anthropic's stream says input_tokens first, output_tokens at its end.
TEST(GatewayTokenAccount, AnAnthropicStreamCutAfterItsStartIsChargedWhatItGot) {
  TokenAccount account;
  account.on_event(
      R"({"type":"message_start","message":{"content":[],"usage":{"input_tokens":17,"output_tokens":1}}})");
  for (int i = 0; i < 3; ++i)
    account.on_event(R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}})");
  EXPECT_EQ(account.prompt_tokens(), 17);
  EXPECT_EQ(account.completion_tokens(), 4);  // the 1 message_start says and the 3 that came after
  account.on_event(
      R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}})");
  EXPECT_EQ(account.completion_tokens(), 3);  // the end: the upstream's count
  EXPECT_EQ(account.prompt_tokens(), 17);
}

TEST(GatewayTokenAccount, AStreamPastItsReservationExtendsItSoOthersSeeIt) {
  const auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1000);
  door::RateLimiter limiter;
  TokenAccount account;
  account.open(limiter, "k", 50);
  const auto facts = scan_request(R"({"max_tokens":4})");
  EXPECT_EQ(account.reserve(facts, 0, true, now).reserved, 5);  // 4 + a 1-token prompt estimate
  for (int i = 0; i < 60; ++i) account.on_event(R"({"choices":[{"delta":{"content":"a"}}]})");
  // 60 counted: the key's window is past its limit while the stream runs.
  EXPECT_FALSE(limiter.reserve("k", 50, 1, now).allowed);
  account.settle(now);
  const auto after = limiter.reserve("k", 50, 1, now);
  EXPECT_FALSE(after.allowed);
  EXPECT_EQ(after.reason, "tokens per minute: 61 used of 50");
}

}  // namespace
}  // namespace clawbot::gateway
