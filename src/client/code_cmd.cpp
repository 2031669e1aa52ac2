#include "client/code_cmd.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>

#include "client/cli.h"
#include "client/code_prompts.h"
#include "common/cli_error.h"

namespace clawbot::client {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Tokens per byte of source code, before the server has said otherwise: about 2.5 bytes a token, on the
// safe side for BPE vocabularies (code averages 3 to 4); a too-long prompt is retried with half the code.
constexpr double code_tokens_per_byte = 0.4;
constexpr std::int64_t assumed_context = 4096;  // when neither the server nor clawbot.json says
constexpr int max_shrinks = 3;                  // halvings of the code after context_length_exceeded

// Instructions around the code, in tokens (generous, so the estimate errs towards fitting).
constexpr std::int64_t fim_overhead_tokens = 16;
constexpr std::int64_t chat_overhead_tokens = 200;

struct ModelFacts {
  std::string id;
  std::int64_t context = 0;  // 0: unknown
  std::optional<bool> fim;   // absent: the server does not say (not clawbot serve)
};

class CodeRun {
 public:
  CodeRun(const CodeOptions& options, ClientConfig config, std::string text)
      : options_(options),
        config_(std::move(config)),
        text_(std::move(text)),
        file_name_(fs::path(options.file).filename().string()),
        language_(language_for(options.file)),
        api_(config_) {}

  int run() {
    if (!load_model_facts()) return 1;
    if (options_.action == "complete") return complete();
    if (options_.action == "review") return review();
    return tests();
  }

 private:
  void note(const std::string& message) const { std::cerr << "clawbot code: " << message << "\n"; }
  void verbose(const std::string& message) const {
    if (options_.verbose) note(message);
  }
  int fail(const Failure& failure) const {
    return cli_error("clawbot code", failure.message, failure.kind == FailureKind::config ? 2 : 1);
  }

  std::int64_t context() const {
    if (config_.context_length > 0) return config_.context_length;
    return facts_.context > 0 ? facts_.context : assumed_context;
  }

  // The answer's length: --max-tokens, else the config's capped at `cap` (a completion needs less than a
  // chat answer), and never more than half the context, so the code keeps the other half.
  std::int64_t answer_tokens(std::int64_t cap) const {
    const std::int64_t wanted =
        options_.overrides.max_tokens ? *options_.overrides.max_tokens : std::min(config_.max_tokens, cap);
    return std::max<std::int64_t>(1, std::min(wanted, context() / 2));
  }

  // GET /v1/models once: the model's context and whether it has FIM tokens. A server without the route
  // (some gateways) leaves both unknown; a server that cannot be reached ends the command here.
  bool load_model_facts() {
    std::optional<Failure> failure;
    if (const auto model = api_.endpoint_model(&failure)) {
      facts_.id = model->id;
      facts_.context = model->context_length;
      facts_.fim = model->fim;
    } else if (failure && failure->kind != FailureKind::protocol &&
               !(failure->kind == FailureKind::http_status && failure->status == 404)) {
      fail(*failure);
      return false;
    }
    verbose("model " + (facts_.id.empty() ? std::string("(unnamed)") : facts_.id) + ", context " +
            std::to_string(context()) + " tokens, fill-in-the-middle " +
            (facts_.fim ? (*facts_.fim ? "yes" : "no") : "unknown"));
    return true;
  }

  // One chat answer, collected whole. A prompt the server finds too long is sent again with half the code.
  ChatOutcome chat_fitting(std::size_t budget, const std::function<ChatRequest(std::size_t budget)>& build) {
    for (int shrink = 0;; ++shrink) {
      ChatOutcome outcome = api_.chat(build(budget), [](std::string_view) {});
      const bool too_long = outcome.failure && outcome.failure->code == "context_length_exceeded";
      if (!too_long || outcome.started || shrink == max_shrinks) return outcome;
      budget /= 2;
      verbose("the prompt was too long for the model's context; trying again with at most " +
              std::to_string(budget) + " bytes of code");
    }
  }

  void tell_cut(const LineWindow& window, const std::string& around) const {
    if (!window.cut()) return;
    note(file_name_ + " is too large for the model's context (" + std::to_string(context()) +
         " tokens): sent lines " + std::to_string(window.first_line) + "-" +
         std::to_string(window.last_line) + " of " + std::to_string(window.total_lines) + " around " +
         around);
  }

  void tell_cut(const CursorWindow& window) const {
    if (!window.cut()) return;
    note(file_name_ + " is too large for the model's context (" + std::to_string(context()) +
         " tokens): left out " + std::to_string(window.lines_dropped_before) +
         " lines before the cursor and " + std::to_string(window.lines_dropped_after) + " after it");
  }

  // ------------------------------------------------------------------ complete

  int complete() {
    const CursorSplit split = split_at_cursor(text_, options_.line, options_.col);
    const std::int64_t answer = answer_tokens(256);
    bool use_fim = options_.mode == CompletionMode::fim ||
                   (options_.mode == CompletionMode::automatic && facts_.fim.value_or(true));
    if (use_fim) {
      std::string inserted;
      const auto outcome = complete_fim(split, answer, inserted);
      if (outcome == FimOutcome::done) {
        std::cout << inserted << std::flush;
        return 0;
      }
      if (outcome == FimOutcome::failed) return 1;
      // unsupported: fall through to an instruction
      if (options_.mode == CompletionMode::fim) {
        note("--mode fim: the model at " + api_.endpoint() +
             " cannot fill in the middle; leave out --mode to use an instruction prompt instead");
        return 1;
      }
    }
    return complete_instruct(split, answer);
  }

  enum class FimOutcome { done, unsupported, failed };

  FimOutcome complete_fim(const CursorSplit& split, std::int64_t answer, std::string& inserted) {
    const std::size_t budget =
        code_byte_budget(context(), answer, fim_overhead_tokens, code_tokens_per_byte, 256);
    const CursorWindow window = fit_around_cursor(split, budget);
    tell_cut(window);
    json body = {{"input_prefix", window.prefix},
                 {"input_suffix", window.suffix},
                 {"n_predict", answer},
                 {"temperature", config_.temperature},
                 {"stream", false}};
    if (!config_.model.empty()) body["model"] = config_.model;
    verbose("POST /infill: " + std::to_string(window.prefix.size()) + " bytes before the cursor, " +
            std::to_string(window.suffix.size()) + " after");
    JsonOutcome reply = api_.request_json("/infill", body);
    if (reply.failure) {
      const Failure& f = *reply.failure;
      // Ours says fim_not_supported (400); llama-server answers 501; a server without the route 404.
      const bool unsupported = f.kind == FailureKind::http_status &&
                               (f.code == "fim_not_supported" || f.status == 404 || f.status == 501);
      if (unsupported) {
        verbose("no fill-in-the-middle at " + api_.endpoint() + " (" + f.message +
                "); using an instruction prompt");
        return FimOutcome::unsupported;
      }
      fail(f);
      return FimOutcome::failed;
    }
    const json& content = reply.body.is_object() ? reply.body.value("content", json()) : json();
    if (!content.is_string()) {
      note(api_.endpoint() + "/infill answered without a \"content\" string; is it llama-server compatible?");
      return FimOutcome::failed;
    }
    if (reply.body.value("truncated", false) && !window.cut())
      note("the server cut " + file_name_ + " to fit its context around the cursor");
    inserted = content.get<std::string>();
    return FimOutcome::done;
  }

  int complete_instruct(const CursorSplit& split, std::int64_t answer) {
    const std::size_t budget =
        code_byte_budget(context(), answer, chat_overhead_tokens, code_tokens_per_byte, 256);
    CursorWindow window;
    ChatOutcome outcome = chat_fitting(budget, [&](std::size_t bytes) {
      window = fit_around_cursor(split, bytes);
      verbose("POST /v1/chat/completions (instruction): " + std::to_string(window.prefix.size()) +
              " bytes before the cursor, " + std::to_string(window.suffix.size()) + " after");
      return ChatRequest{
          completion_messages(language_, file_name_, window), answer, std::nullopt, {}, json::object()};
    });
    tell_cut(window);
    if (outcome.failure) return fail(*outcome.failure);
    std::cout << clean_completion(outcome.text) << std::flush;
    return 0;
  }

  // ------------------------------------------------------------------ review

  int review() {
    const std::int64_t answer = answer_tokens(1024);
    // Line numbers add about 6 bytes a line; counted in the overhead's favour by a smaller budget.
    const std::size_t budget =
        code_byte_budget(context(), answer, chat_overhead_tokens, code_tokens_per_byte, 256) * 4 / 5;
    LineWindow window;
    ChatOutcome outcome = chat_fitting(budget, [&](std::size_t bytes) {
      window = window_around_line(text_, std::max(options_.line, 1), bytes);
      return ChatRequest{
          review_messages(language_, file_name_, window), answer, std::nullopt, {}, json::object()};
    });
    tell_cut(window, "line " + std::to_string(std::max(options_.line, 1)) + " (--line chooses the part)");
    if (outcome.failure) return fail(*outcome.failure);
    if (outcome.finish_reason == "length")
      note("the review was cut at " + std::to_string(answer) +
           " tokens (--max-tokens); findings may be missing");
    const ReviewResult result = parse_review(outcome.text, window.first_line, window.last_line);
    if (result.out_of_range > 0)
      verbose(std::to_string(result.out_of_range) + " finding(s) named lines outside " +
              std::to_string(window.first_line) + "-" + std::to_string(window.last_line) +
              " and were dropped");
    const auto source_lines = split_lines(text_);
    if (options_.json) {
      json findings = json::array();
      for (const auto& f : result.findings) {
        const auto index = static_cast<std::size_t>(f.line - 1);
        findings.push_back({{"line", f.line},
                            {"reason", f.reason},
                            {"code", index < source_lines.size() ? std::string(source_lines[index]) : ""}});
      }
      const json report = {
          {"file", options_.file},
          {"language", std::string(language_.name)},
          {"model", outcome.model.empty() ? facts_.id : outcome.model},
          {"status", std::string(review_status_name(result.status))},
          {"lines",
           {{"first", window.first_line}, {"last", window.last_line}, {"total", window.total_lines}}},
          {"cut", window.cut()},
          {"findings", std::move(findings)},
          {"out_of_range", result.out_of_range},
          {"answer", outcome.text},
          {"finish_reason", outcome.finish_reason}};
      std::cout << report.dump(2) << "\n";
    } else {
      switch (result.status) {
        case ReviewStatus::findings:
          for (const auto& f : result.findings)
            std::cout << options_.file << ":" << f.line << ": " << f.reason << "\n";
          break;
        case ReviewStatus::no_findings:
          std::cout << options_.file << ": no findings in lines " << window.first_line << "-"
                    << window.last_line << "\n";
          break;
        case ReviewStatus::unparsed:
          std::cout << options_.file
                    << ": could not parse the review: the model did not answer in the form LINE: reason. "
                       "Its answer:\n"
                    << outcome.text << (outcome.text.ends_with('\n') ? "" : "\n");
          break;
      }
    }
    return result.status == ReviewStatus::unparsed ? 3 : 0;
  }

  // ------------------------------------------------------------------ tests

  int tests() {
    const fs::path target =
        options_.output.empty() ? suggested_test_path(options_.file) : fs::path(options_.output);
    const std::int64_t answer = answer_tokens(2048);
    const std::size_t budget =
        code_byte_budget(context(), answer, chat_overhead_tokens, code_tokens_per_byte, 256);
    LineWindow window;
    ChatOutcome outcome = chat_fitting(budget, [&](std::size_t bytes) {
      window = window_around_line(text_, std::max(options_.line, 1), bytes);
      return ChatRequest{tests_messages(language_, file_name_, window, target.filename().string()),
                         answer,
                         std::nullopt,
                         {},
                         json::object()};
    });
    tell_cut(window,
             "line " + std::to_string(std::max(options_.line, 1)) + " (--line chooses the part to test)");
    if (outcome.failure) return fail(*outcome.failure);
    bool fenced = false;
    const std::string code = extract_code(outcome.text, &fenced);
    if (code.empty()) {
      note("the model's answer was empty; nothing written");
      return 1;
    }
    if (outcome.finish_reason == "length")
      note("the answer was cut at " + std::to_string(outcome.max_tokens) +
           " tokens (--max-tokens, or the model's context); the tests may be incomplete");
    // Prose, or code cut in the middle, never goes into a test file: shown, and exit 3 as review does.
    std::string problem = test_file_problem(language_, code);
    if (problem.empty() && language_.fence == "python") problem = python_problem(code);
    if (!problem.empty()) {
      std::cout << outcome.text << (outcome.text.ends_with('\n') ? "" : "\n") << std::flush;
      note("the answer is not a " + std::string(language_.test_framework) + " test file (" + problem + ")" +
           (fenced ? "" : "; it held no ``` code block") + ": " +
           (options_.output.empty() ? std::string("its text is above")
                                    : "nothing written to " + target.string() + "; its text is above"));
      return 3;
    }
    if (!fenced) note("the answer held no ``` code block; it is taken whole");
    if (options_.output.empty()) {
      std::cout << code << std::flush;
      verbose("suggested file: " + target.string());
      return 0;
    }
    if (!write_file(target, code)) return 2;
    note("wrote " + std::to_string(std::count(code.begin(), code.end(), '\n')) + " lines of " +
         std::string(language_.test_framework) + " tests to " + target.string());
    return 0;
  }

  // What Python's own parser says of `code` (empty when it parses, or when there is no python3 to ask).
  static std::string python_problem(const std::string& code) {
    char path[] = "/tmp/clawbot-code-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) return {};
    const bool written = ::write(fd, code.data(), code.size()) == static_cast<ssize_t>(code.size());
    ::close(fd);
    std::string output;
    int status = -1;
    if (written) {
      const std::string command = std::string(
                                      "python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), "
                                      "\"test file\")' ") +
                                  path + " 2>&1";
      if (std::FILE* pipe = ::popen(command.c_str(), "r")) {
        char buffer[512];
        while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
        status = ::pclose(pipe);
      }
    }
    ::unlink(path);
    // 127: no python3 on this machine; the structural check has already run.
    if (status == 0 || !WIFEXITED(status) || WEXITSTATUS(status) == 127) return {};
    // The last line is the error ("SyntaxError: invalid syntax"); the one naming the line is before it.
    const auto lines = split_lines(output);
    std::string where, what;
    for (const auto line : lines) {
      const std::string_view text = line;
      if (text.find("line ") != std::string_view::npos && text.find("File ") != std::string_view::npos)
        where = std::string(text.substr(text.find("line ")));
      if (!text.empty() && text.front() != ' ') what = std::string(text);
    }
    return "python3 cannot parse it: " + what + (where.empty() ? "" : " (" + where + ")");
  }

  // Written beside the target, then renamed: never a half-written test file.
  bool write_file(const fs::path& target, const std::string& content) const {
    const fs::path temp = target.string() + ".clawbot-tmp";
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      out << content;
      out.flush();
      if (!out) {
        note("cannot write " + temp.string() + ": check that the directory exists and is writable");
        return false;
      }
    }
    std::error_code ec;
    fs::rename(temp, target, ec);
    if (ec) {
      note("cannot move " + temp.string() + " to " + target.string() + ": " + ec.message());
      fs::remove(temp, ec);
      return false;
    }
    return true;
  }

  const CodeOptions& options_;
  ClientConfig config_;
  std::string text_;
  std::string file_name_;
  Language language_;
  ApiClient api_;
  ModelFacts facts_;
};

std::optional<std::string> read_source(const std::string& path, std::string& problem) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    problem = path + ": " + (fs::exists(path, ec) ? "not a regular file" : "no such file");
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) {
    problem = path + ": cannot read it (permissions?)";
    return std::nullopt;
  }
  return text.str();
}

}  // namespace

int run_code(const CodeOptions& options) {
  try {
    std::string problem;
    const auto text = read_source(options.file, problem);
    if (!text) return cli_error("clawbot code", problem, 2);
    check_source_text(*text, options.file);
    if (options.action == "tests" && !options.output.empty() && !options.force &&
        fs::exists(options.output)) {
      return cli_error("clawbot code", options.output + " exists; --force replaces it", 2);
    }
    if (options.action == "complete")
      split_at_cursor(*text, options.line, options.col);  // before any request
    ClientConfig config = load_client_config(options.search, options.overrides);
    CodeRun run(options, std::move(config), *text);
    return run.run();
  } catch (const ConfigError& e) {
    return cli_error("clawbot code", e.what(), 2);
  } catch (const CodeInputError& e) {
    return cli_error("clawbot code", options.file + ": " + e.what(), 2);
  }
}

std::function<std::optional<int>()> add_code_command(CLI::App& app) {
  auto options = std::make_shared<CodeOptions>();
  auto* code_cmd =
      app.add_subcommand("code", "Code assistant: completion at a cursor, error review, unit tests");
  code_cmd->require_subcommand(1);

  auto* complete = code_cmd->add_subcommand(
      "complete",
      "Print the code to insert at --line/--col (fill-in-the-middle when the model has FIM tokens)");
  complete->add_option("file", options->file, "Source file")->required();
  complete->add_option("-l,--line", options->line, "The cursor's line (1-based)")
      ->required()
      ->check(CLI::PositiveNumber);
  complete
      ->add_option("-c,--col", options->col,
                   "The cursor's column in characters (1-based; default: end of line)")
      ->check(CLI::PositiveNumber);
  complete
      ->add_option(
          "--mode", options->mode,
          "auto: /infill when the model can, else an instruction; fim: only /infill; instruct: only chat")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, CompletionMode>{{"auto", CompletionMode::automatic},
                                                {"fim", CompletionMode::fim},
                                                {"instruct", CompletionMode::instruct}},
          CLI::ignore_case));

  auto* review =
      code_cmd->add_subcommand("review", "List likely errors as FILE:LINE: reason (--json for editors)");
  review->add_option("file", options->file, "Source file")->required();
  review->add_flag("--json", options->json,
                   "Print one JSON object: status, findings [{line, reason, code}], ...");
  review
      ->add_option("-l,--line", options->line,
                   "For a file too large for the context: the line to review around")
      ->check(CLI::PositiveNumber);

  auto* tests =
      code_cmd->add_subcommand("tests", "Write unit tests for a file in its language's usual framework");
  tests->add_option("file", options->file, "Source file")->required();
  tests->add_option("-o,--output", options->output, "Test file to write (default: print to stdout)");
  tests->add_flag("--force", options->force, "Replace an existing --output file");
  tests
      ->add_option("-l,--line", options->line,
                   "For a file too large for the context: the line to test around")
      ->check(CLI::PositiveNumber);

  for (auto* command : {complete, review, tests}) {
    add_client_flags(*command, options->search, options->overrides);
    command->add_flag("-v,--verbose", options->verbose,
                      "Say on stderr which route was used and what was cut");
  }

  return [=]() -> std::optional<int> {
    if (!code_cmd->parsed()) return std::nullopt;
    options->action = code_cmd->get_subcommands().at(0)->get_name();
    return run_code(*options);
  };
}

}  // namespace clawbot::client
