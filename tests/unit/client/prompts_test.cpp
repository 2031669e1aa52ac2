// The prompts the browser chat gets from /v1/clawbot/prompts: built by the functions `clawbot ask --template`
// and `clawbot code` use, and bad bodies named.
#include "client/prompts.h"

#include <gtest/gtest.h>

#include "client/code_prompts.h"
#include "common/error.h"

namespace clawbot::client {
namespace {

using nlohmann::json;

std::string refusal(const json& body, std::string* param = nullptr) {
  try {
    prompt_messages(body);
  } catch (const ClawbotError& e) {
    EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
    if (param) *param = e.error().param;
    return e.what();
  }
  return "(accepted)";
}

TEST(Prompts, TasksListTheTemplatesAndTheCodeTasks) {
  const json tasks = prompt_tasks();
  ASSERT_EQ(tasks.at("writing").size(), writing_templates().size());
  for (std::size_t i = 0; i < writing_templates().size(); ++i) {
    EXPECT_EQ(tasks["writing"][i].at("name"), writing_templates()[i].name);
    EXPECT_EQ(tasks["writing"][i].at("description"), writing_templates()[i].description);
  }
  EXPECT_EQ(tasks.at("code")[0].at("name"), "review");
  EXPECT_EQ(tasks.at("code")[1].at("name"), "tests");
}

TEST(Prompts, WritingTasksAreTheTemplatesWithTheTextAsTheQuestion) {
  const json polish = prompt_messages({{"task", "polish"}, {"text", "Ths is it."}});
  EXPECT_EQ(polish.at("task"), "polish");
  EXPECT_EQ(polish.at("messages"),
            json::array({{{"role", "system"}, {"content", find_writing_template("polish")->system_prompt}},
                         {{"role", "user"}, {"content", "Ths is it."}}}));
  const json french = prompt_messages({{"task", "translate"}, {"text", "Hello"}, {"language", "French"}});
  EXPECT_EQ(french["messages"][0]["content"],
            "Translate the text the user gives you into French. Keep its meaning, tone and formatting. Write "
            "only the translation.");
  EXPECT_NE(prompt_messages({{"task", "summarize"}, {"text", "x"}})["messages"][0]["content"], "");
}

TEST(Prompts, CodeTasksAreClawbotCodesPromptsForTheWholeText) {
  const std::string code = "def add(a, b):\n    return a - b\n";
  const LineWindow window = window_around_line(code, 1, 1 << 20);
  const Language python = language_for("adder.py");
  json expected = json::array();
  for (const auto& m : review_messages(python, "adder.py", window))
    expected.push_back({{"role", m.role}, {"content", m.content}});
  EXPECT_EQ(prompt_messages({{"task", "review"}, {"text", code}, {"file_name", "adder.py"}})["messages"],
            expected);
  const json tests = prompt_messages({{"task", "tests"}, {"text", code}, {"file_name", "adder.py"}});
  EXPECT_NE(tests["messages"][1]["content"].get<std::string>().find("saved as test_adder.py"),
            std::string::npos)
      << tests.dump();
}

TEST(Prompts, BadBodiesAreNamed) {
  std::string param;
  EXPECT_NE(refusal({{"text", "x"}}, &param).find("'task' is missing"), std::string::npos);
  EXPECT_EQ(param, "task");
  EXPECT_NE(
      refusal({{"task", "sing"}, {"text", "x"}}, &param).find("no task \"sing\": there are continue, polish"),
      std::string::npos)
      << refusal({{"task", "sing"}, {"text", "x"}});
  EXPECT_EQ(param, "task");
  EXPECT_NE(refusal({{"task", "polish"}, {"text", 5}}, &param).find("'text' must be a string"),
            std::string::npos);
  EXPECT_EQ(param, "text");
  EXPECT_NE(refusal({{"task", "polish"}, {"text", " \n"}}, &param).find("'text' is empty"),
            std::string::npos);
  EXPECT_NE(refusal({{"task", "review"}, {"text", std::string("a\0b", 3)}}, &param), "(accepted)");
  EXPECT_EQ(param, "text");
  EXPECT_NE(refusal(json::array()).find("must be a JSON object"), std::string::npos);
}

}  // namespace
}  // namespace clawbot::client
