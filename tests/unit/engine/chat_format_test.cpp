// The chat format layer over llama.cpp's common: Qwen3's real Jinja template (tests/fixtures/templates) on
// stories260K's vocabulary: prompts, tool-call grammars and triggers, and parsing answers back.
#include "engine/chat_format.h"
#include "test_models.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

namespace clawbot::engine {
namespace {

namespace fs = std::filesystem;

using test::model_path;

const Model& stories() {
  static Model m = Model::load({.path = model_path("stories260K.gguf"), .vocab_only = true});
  return m;
}

std::string qwen3_template() {
  std::ifstream file(std::string(CLAWBOT_FIXTURES) + "/templates/Qwen-Qwen3-0.6B.jinja");
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_FALSE(text.str().empty());
  return text.str();
}

const ChatFormatter& qwen3(ReasoningFormat reasoning = ReasoningFormat::automatic) {
  static ChatFormatter automatic =
      ChatFormatter::create(stories(), "qwen3", qwen3_template(), ReasoningFormat::automatic);
  static ChatFormatter none =
      ChatFormatter::create(stories(), "qwen3", qwen3_template(), ReasoningFormat::none);
  return reasoning == ReasoningFormat::none ? none : automatic;
}

ChatTurn user(const std::string& text) {
  return {"user", text, {}, {}, {}, {}};
}

const ChatToolSpec weather{
    "get_weather", "The weather in a city",
    R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})"};

// The root rule of a grammar (its first line starting "root ::= ").
std::string root_rule(const std::string& grammar) {
  std::stringstream lines(grammar);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("root ::= ", 0) == 0) return line;
  }
  return {};
}

TEST(ChatFormat, QwenTemplateFormatsAPlainConversation) {
  const auto& f = qwen3();
  EXPECT_TRUE(f.jinja());
  EXPECT_TRUE(f.supports_tools());
  ChatFormatRequest request;
  request.messages = {{"system", "Be brief.", {}, {}, {}, {}}, user("hello")};
  const auto out = f.format(request);
  EXPECT_NE(out.prompt.find("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
                            "<|im_start|>assistant\n"),
            std::string::npos)
      << out.prompt;
  EXPECT_TRUE(out.grammar.empty());
}

TEST(ChatFormat, RequiredToolGetsAStrictGrammarWithoutTheGenerationPrompt) {
  ChatFormatRequest request;
  request.messages = {user("weather in Paris?")};
  request.tools = {weather};
  request.tool_mode = ToolMode::required;
  const auto out = qwen3().format(request);
  EXPECT_NE(out.prompt.find("get_weather"), std::string::npos);
  ASSERT_FALSE(out.grammar.empty());
  EXPECT_FALSE(out.grammar_lazy);
  const std::string root = root_rule(out.grammar);
  // The generation prompt is in the prompt already, and free text before the calls is not allowed.
  EXPECT_EQ(root.find("im_start"), std::string::npos) << root;
  EXPECT_FALSE(std::regex_search(root, std::regex(R"(until-\d+\? tool-calls)"))) << root;
  EXPECT_NE(root.find("tool-calls"), std::string::npos) << root;
  EXPECT_NE(out.grammar.find("tool-calls ::= (tool-call space)+"), std::string::npos) << out.grammar;

  // parallel_tool_calls false: one call.
  request.parallel_tool_calls = false;
  const auto one = qwen3().format(request);
  EXPECT_NE(one.grammar.find("tool-calls ::= tool-call space\n"), std::string::npos) << one.grammar;
}

TEST(ChatFormat, ThinkingDisabledTakesTheThinkingGroupOutOfTheGrammar) {
  ChatFormatRequest request;
  request.messages = {user("weather in Paris?")};
  request.tools = {weather};
  request.tool_mode = ToolMode::required;
  request.enable_thinking = false;
  const auto out = qwen3().format(request);
  EXPECT_NE(out.prompt.find("<think>\n\n</think>\n\n"), std::string::npos) << out.prompt;
  const std::string root = root_rule(out.grammar);
  EXPECT_EQ(root.find("think"), std::string::npos) << root;
}

TEST(ChatFormat, AutoToolsGetALazyGrammarTriggeredByTheCallTag) {
  ChatFormatRequest request;
  request.messages = {user("weather in Paris?")};
  request.tools = {weather};
  const auto out = qwen3().format(request);
  ASSERT_FALSE(out.grammar.empty());
  EXPECT_TRUE(out.grammar_lazy);
  // stories260K has no <tool_call> token: the trigger is the text.
  ASSERT_EQ(out.grammar_trigger_patterns.size(), 1u);
  EXPECT_NE(out.grammar_trigger_patterns[0].find("tool_call"), std::string::npos);
}

TEST(ChatFormat, ToolChoiceNoneHasNoGrammar) {
  ChatFormatRequest request;
  request.messages = {user("hi")};
  request.tools = {weather};
  request.tool_mode = ToolMode::none;
  EXPECT_TRUE(qwen3().format(request).grammar.empty());
}

TEST(ChatFormat, ParsesReasoningAndToolCalls) {
  ChatFormatRequest request;
  request.messages = {user("weather in Paris?")};
  request.tools = {weather};
  const auto out = qwen3().format(request);
  const std::string answer =
      "<think>\nIt asks for weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Paris\"}}\n</tool_call>";
  const auto turn = out.parser.parse(answer, false);
  EXPECT_EQ(turn.reasoning_content, "It asks for weather.\n");
  EXPECT_EQ(turn.content, "");
  ASSERT_EQ(turn.tool_calls.size(), 1u);
  EXPECT_EQ(turn.tool_calls[0].name, "get_weather");
  EXPECT_EQ(turn.tool_calls[0].arguments, R"({"city": "Paris"})");

  // Part way through, the call has its name and the arguments so far.
  const auto partial = out.parser.parse(answer.substr(0, answer.find("Paris") + 3), true);
  ASSERT_EQ(partial.tool_calls.size(), 1u);
  EXPECT_EQ(partial.tool_calls[0].name, "get_weather");
  EXPECT_EQ(partial.tool_calls[0].arguments, R"({"city": "Par)");
}

TEST(ChatFormat, ReasoningFormatNoneLeavesThinkingInTheContent) {
  ChatFormatRequest request;
  request.messages = {user("hi")};
  const auto out = qwen3(ReasoningFormat::none).format(request);
  const auto turn = out.parser.parse("<think>\nhmm\n</think>\n\nHello!", false);
  EXPECT_EQ(turn.reasoning_content, "");
  EXPECT_NE(turn.content.find("hmm"), std::string::npos) << turn.content;
  EXPECT_NE(turn.content.find("Hello!"), std::string::npos) << turn.content;
}

TEST(ChatFormat, HistoryWithToolCallsAndResultsReachesTheTemplate) {
  ChatFormatRequest request;
  ChatTurn call{"assistant", "", "", {{"call_1", "get_weather", R"({"city":"Paris"})"}}, "", ""};
  ChatTurn result{"tool", "sunny, 21 C", "", {}, "call_1", "get_weather"};
  request.messages = {user("weather in Paris?"), call, result};
  request.tools = {weather};
  const auto out = qwen3().format(request);
  EXPECT_NE(out.prompt.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"),
            std::string::npos)
      << out.prompt;
  EXPECT_NE(out.prompt.find("<tool_response>\nsunny, 21 C\n</tool_response>"), std::string::npos)
      << out.prompt;
}

TEST(ChatFormat, AnAssistantsReasoningInTheHistoryReachesTheTemplate) {
  // Qwen3 shows the thinking of the turns after the last user message (a tool loop's turns).
  ChatFormatRequest request;
  ChatTurn call{"assistant", "", "Paris needs a lookup.", {{"call_1", "get_weather", R"({"city":"Paris"})"}},
                "",          ""};
  ChatTurn result{"tool", "sunny", "", {}, "call_1", "get_weather"};
  request.messages = {user("weather in Paris?"), call, result};
  request.tools = {weather};
  const auto out = qwen3().format(request);
  EXPECT_NE(out.prompt.find("<think>\nParis needs a lookup.\n</think>"), std::string::npos) << out.prompt;
}

TEST(ChatFormat, JsonSchemaBecomesAGrammarAndAnUnsupportedOneIsRefusedInTheConvertersWords) {
  const std::string schema = R"({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]})";
  ChatFormatRequest request;
  request.messages = {user("a number")};
  request.json_schema = schema;
  const auto out = qwen3().format(request);
  ASSERT_FALSE(out.grammar.empty());
  EXPECT_FALSE(out.grammar_lazy);
  EXPECT_EQ(root_rule(out.grammar).find("im_start"), std::string::npos);
  EXPECT_FALSE(json_schema_grammar(schema, "response_format").empty());
  try {
    (void)json_schema_grammar(R"({"$ref":"#/definitions/missing"})", "response_format.json_schema.schema");
    FAIL() << "an unresolvable $ref converted";
  } catch (const ChatFormatError& e) {
    EXPECT_EQ(e.field(), "response_format.json_schema.schema");
    EXPECT_NE(std::string(e.what()).find("#/definitions/missing"), std::string::npos) << e.what();
  }
}

// A later request of the same shape (tools, choice, thinking) renders only its prompt; what it gets must be
// what a fresh formatter, analysing the template in full, gives for the same request.
TEST(ChatFormat, ARequestOfAKnownShapeGetsWhatTheFullPathGives) {
  const auto fresh = [] {
    return ChatFormatter::create(stories(), "qwen3", qwen3_template(), ReasoningFormat::automatic);
  };
  for (const ToolMode mode : {ToolMode::automatic, ToolMode::required}) {
    for (const std::optional<bool> thinking : {std::optional<bool>{}, std::optional<bool>{false}}) {
      const auto warm = fresh();
      ChatFormatRequest first;
      first.messages = {user("What is the weather in Paris?")};
      first.tools = {weather};
      first.tool_mode = mode;
      first.enable_thinking = thinking;
      (void)warm.format(first);  // the shape is now known
      ChatFormatRequest later = first;
      later.messages = {{"system", "Be brief.", {}, {}, {}, {}}, user("And in Berlin, tomorrow?")};
      const auto cached = warm.format(later);
      const auto full = fresh().format(later);
      EXPECT_EQ(cached.prompt, full.prompt);
      EXPECT_NE(cached.prompt.find("And in Berlin, tomorrow?"), std::string::npos);
      EXPECT_EQ(cached.grammar, full.grammar);
      EXPECT_EQ(cached.grammar_lazy, full.grammar_lazy);
      EXPECT_EQ(cached.grammar_trigger_patterns, full.grammar_trigger_patterns);
      EXPECT_EQ(cached.grammar_trigger_tokens, full.grammar_trigger_tokens);
      EXPECT_EQ(cached.additional_stops, full.additional_stops);
      const std::string answer =
          "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Berlin\"}}\n</tool_call>";
      const auto a = cached.parser.parse(answer, false), b = full.parser.parse(answer, false);
      ASSERT_EQ(a.tool_calls.size(), 1u);
      ASSERT_EQ(b.tool_calls.size(), 1u);
      EXPECT_EQ(a.tool_calls[0].arguments, b.tool_calls[0].arguments);
    }
  }
}

TEST(ChatFormat, BuiltinTemplatesFormatTextButRefuseTools) {
  const auto llama3 = ChatFormatter::create(stories(), "llama3", "llama3", ReasoningFormat::automatic);
  EXPECT_FALSE(llama3.jinja());
  ChatFormatRequest request;
  request.messages = {user("hello")};
  EXPECT_NE(llama3.format(request).prompt.find("<|start_header_id|>user<|end_header_id|>"),
            std::string::npos);
  request.tools = {weather};
  try {
    (void)llama3.format(request);
    FAIL() << "tools with a built-in template";
  } catch (const ChatFormatError& e) {
    EXPECT_EQ(e.field(), "tools");
  }
}

TEST(ChatFormat, AModelWithoutATemplateNeedsOne) {
  try {
    (void)ChatFormatter::create(stories(), "stories260K (from model)", "", ReasoningFormat::automatic);
    FAIL() << "stories260K has no template";
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos) << e.what();
  }
}

TEST(ChatFormat, BadJinjaIsRefusedAtCreation) {
  EXPECT_THROW((void)ChatFormatter::create(stories(), "bad", "{% if %}", ReasoningFormat::automatic),
               EngineError);
}

}  // namespace
}  // namespace clawbot::engine
