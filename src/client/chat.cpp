// `clawbot chat`: an interactive session. Line editing and history come from libedit; every message is in the
// session store the moment it exists (answers as "partial" from their first token on), so a crash or a cut
// network loses nothing that was on the screen. Ctrl-C stops an answer, Ctrl-D leaves.
#include <histedit.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <cwchar>
#include <iostream>

#include "client/assistant.h"
#include "client/session_store.h"
#include "common/text.h"
#include "common/user_dirs.h"
#include "common/cli_error.h"

namespace clawbot::client {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t prompt_interrupted = 0;

void on_prompt_sigint(int) {
  prompt_interrupted = 1;
}

// SIGINT at the prompt drops the line being typed; the handler has no SA_RESTART so that read() returns.
void install_prompt_sigint() {
  struct sigaction action {};
  action.sa_handler = on_prompt_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, nullptr);
}

// libedit's character reader, replaced so that Ctrl-C ends el_gets() (it would otherwise retry the read).
int read_terminal_char(EditLine*, wchar_t* out) {
  std::mbstate_t state{};
  for (;;) {
    char byte = 0;
    const ssize_t n = ::read(STDIN_FILENO, &byte, 1);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR && !prompt_interrupted) continue;
      return -1;
    }
    const std::size_t r = std::mbrtowc(out, &byte, 1, &state);
    if (r == static_cast<std::size_t>(-2)) continue;  // more bytes of this character to come
    if (r == static_cast<std::size_t>(-1)) {
      *out = L'?';
      state = {};
    }
    return 1;
  }
}

class LineEditor {
 public:
  enum class Read { line, interrupted, end };

  explicit LineEditor(fs::path history_file) : history_file_(std::move(history_file)) {
    interactive_ = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    if (!interactive_) return;
    editor_.reset(el_init("clawbot", stdin, stdout, stderr));
    history_.reset(history_init());
    HistEvent event;
    history(history_.get(), &event, H_SETSIZE, 2000);
    history(history_.get(), &event, H_SETUNIQUE, 1);
    if (!history_file_.empty()) {
      std::error_code ec;
      fs::create_directories(history_file_.parent_path(), ec);
      history(history_.get(), &event, H_LOAD, history_file_.c_str());
    }
    el_set(editor_.get(), EL_EDITOR, "emacs");
    el_set(editor_.get(), EL_HIST, history, history_.get());
    el_set(editor_.get(), EL_CLIENTDATA, this);
    el_set(editor_.get(), EL_PROMPT, &LineEditor::prompt_of);
    el_set(editor_.get(), EL_GETCFN, &read_terminal_char);
    el_source(editor_.get(), nullptr);  // ~/.editrc, as other libedit programs do
  }

  ~LineEditor() {
    if (!history_ || history_file_.empty()) return;
    HistEvent event;
    history(history_.get(), &event, H_SAVE, history_file_.c_str());
  }

  Read read(const std::string& prompt, std::string& line) {
    if (!interactive_) {
      if (!std::getline(std::cin, line)) return Read::end;
      return Read::line;
    }
    prompt_ = prompt;
    prompt_interrupted = 0;
    install_prompt_sigint();
    int count = 0;
    const char* text = el_gets(editor_.get(), &count);
    if (text == nullptr) {
      if (prompt_interrupted || count < 0) {
        std::fputs("^C\n", stdout);
        return Read::interrupted;
      }
      std::fputc('\n', stdout);
      return Read::end;
    }
    line.assign(text, static_cast<std::size_t>(count));
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    return Read::line;
  }

  void remember(const std::string& line) {
    if (!history_ || line.empty()) return;
    HistEvent event;
    history(history_.get(), &event, H_ENTER, line.c_str());
  }

  bool interactive() const noexcept { return interactive_; }

 private:
  static char* prompt_of(EditLine* el) {
    void* self = nullptr;
    el_get(el, EL_CLIENTDATA, &self);
    return static_cast<LineEditor*>(self)->prompt_.data();
  }

  struct EditorDeleter {
    void operator()(EditLine* el) const { el_end(el); }
  };
  struct HistoryDeleter {
    void operator()(History* h) const { history_end(h); }
  };

  fs::path history_file_;
  bool interactive_ = false;
  std::unique_ptr<EditLine, EditorDeleter> editor_;
  std::unique_ptr<History, HistoryDeleter> history_;
  std::string prompt_;
};

// The line editor's history: none kept (an empty path) without a data directory.
fs::path history_path() {
  const auto data = user_dirs::find(user_dirs::Kind::data);
  return data ? *data / "clawbot" / "chat_history" : fs::path();
}

constexpr const char* kHelp =
    "  /new [NAME]          start a new session\n"
    "  /sessions            recent sessions (resume one with clawbot chat --session NAME)\n"
    "  /system [TEXT|off]   show, set or clear the system prompt of this session\n"
    "  /set KEY VALUE       temperature 0.2 | max_tokens 512 | model NAME\n"
    "  /retry               ask for the last answer again\n"
    "  /save [FILE]         write this session as Markdown (default NAME.md)\n"
    "  /help                this list\n"
    "  /exit                leave (Ctrl-D does too); Ctrl-C stops an answer\n"
    "  A line ending in \\ continues on the next line.\n";

class ChatLoop {
 public:
  ChatLoop(const ChatOptions& options, ClientConfig& config, ApiClient& client, SessionStore& store)
      : options_(options), config_(config), client_(client), store_(store) {
    dim_ = isatty(STDOUT_FILENO) != 0;
  }

  int run() {
    install_prompt_sigint();  // from here on Ctrl-C never kills the chat: it stops an answer or clears a line
    open_session(options_.session);
    LineEditor editor(history_path());
    for (;;) {
      std::string line;
      const auto read = editor.read("> ", line);
      if (read == LineEditor::Read::end) break;
      if (read == LineEditor::Read::interrupted) continue;
      std::string more;
      while (!line.empty() && line.back() == '\\') {
        line.back() = '\n';
        if (editor.read(". ", more) != LineEditor::Read::line) break;
        line += more;
      }
      const std::string text(text::trim(line));
      if (text.empty()) continue;
      editor.remember(line);
      if (text[0] == '/') {
        if (!command(text)) break;
        continue;
      }
      remember(store_.append(session_.id, role_user, text), role_user, text, state_complete);
      answer();
    }
    return 0;
  }

 private:
  void quiet(const std::string& text) const {
    if (dim_)
      std::printf("\033[2m%s\033[0m\n", text.c_str());
    else
      std::printf("%s\n", text.c_str());
    std::fflush(stdout);
  }

  void open_session(const std::string& name) {
    const std::string system = options_.system.empty() ? config_.system_prompt : options_.system;
    std::optional<SessionInfo> found;
    if (!name.empty()) found = store_.find(name);
    if (found) {
      session_ = *found;
      messages_ = store_.messages(session_.id);
      if (!options_.system.empty() && options_.system != session_.system_prompt)
        store_.set_system_prompt(session_.id, options_.system), session_.system_prompt = options_.system;
      quiet("resumed session " + session_.name + " (" + std::to_string(messages_.size()) + " messages, " +
            client_.endpoint() + "; /help for commands, Ctrl-D to leave)");
      // The last exchange, so the user knows where they are.
      std::size_t from = messages_.size() >= 2 ? messages_.size() - 2 : 0;
      for (std::size_t i = from; i < messages_.size(); ++i)
        std::printf("%s %s\n", messages_[i].role == "user" ? ">" : " ", messages_[i].content.c_str());
    } else {
      session_ = store_.create(name, system, config_.model);
      messages_.clear();
      quiet("session " + session_.name + " (" + client_.endpoint() +
            "; /help for commands, Ctrl-D to leave)");
    }
  }

  std::int64_t context_length() { return client_.context_tokens(); }

  void answer() {
    std::vector<ChatMessage> conversation;
    if (!session_.system_prompt.empty()) conversation.push_back({"system", session_.system_prompt});
    for (const auto& m : messages_)
      if (m.role != "system" && !(m.role == "assistant" && m.content.empty()))
        conversation.push_back({m.role, m.content});

    const std::int64_t context = context_length();
    const std::int64_t reserve = context > 0 ? std::min<std::int64_t>(config_.max_tokens, context / 4) : 0;
    ContextFit fit = fit_to_context(conversation, context, reserve, tokens_per_byte_);
    if (fit.dropped_messages > 0)
      quiet("(the conversation is longer than the " + std::to_string(context) +
            "-token context: its oldest " + std::to_string(fit.dropped_messages) +
            " messages are left out of this request)");
    if (!fit.fits)
      quiet("(this message alone is about " + std::to_string(fit.estimated_tokens) +
            " tokens, more than the " + std::to_string(context) +
            "-token context can take with room for an answer)");

    ChatRequest request;
    request.messages = fit.messages;
    request.max_tokens = config_.max_tokens;  // a ceiling: the client sends what the context leaves
    request.temperature = config_.temperature;

    std::int64_t answer_id = 0;
    auto last_save = Clock::now();
    std::string shown;
    client_.set_interruptible(true);
    const ChatOutcome out = client_.chat(request, [&](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      shown += piece;
      // In the store from the first token on; brought up to date a few times a second.
      if (answer_id == 0) {
        answer_id = store_.append(session_.id, role_assistant, shown, state_partial);
        last_save = Clock::now();
      } else if (Clock::now() - last_save > std::chrono::milliseconds(250)) {
        store_.update_message(answer_id, shown, state_partial);
        last_save = Clock::now();
      }
    });
    if (out.started && !out.text.ends_with('\n')) std::fputc('\n', stdout);

    const MessageStats stats = answer_stats(out);
    // The model that answered, as the server named it (a one-model node may answer for any name).
    if (!out.model.empty() && out.model != session_.model) {
      store_.set_model(session_.id, out.model);
      session_.model = out.model;
    }
    if (answer_id != 0) {
      const std::string_view state = answer_state(out);
      const std::string error = out.failure ? out.failure->message : std::string();
      store_.update_message(answer_id, out.text, state, stats, error);
      remember(answer_id, role_assistant, out.text, state);
    } else if (!out.failure) {
      // An answer with no text is still an answer: the conversation shows it happened.
      const std::string_view state = answer_state(out);
      answer_id = store_.append(session_.id, role_assistant, "", state);
      store_.update_message(answer_id, "", state, stats);
      remember(answer_id, role_assistant, "", state);
    }

    if (out.prompt_tokens > 0) {  // calibrate the estimate with what the server counted
      std::size_t bytes = 0;
      for (const auto& m : fit.messages) bytes += m.content.size();
      if (bytes > 0) {
        const double measured =
            static_cast<double>(out.prompt_tokens - 4 * static_cast<std::int64_t>(fit.messages.size())) /
            static_cast<double>(bytes);
        tokens_per_byte_ = std::clamp(measured, 0.05, 1.5);
      }
    }

    if (out.failure) {
      if (out.failure->kind == FailureKind::cancelled) {
        quiet(out.started ? "[stopped; the partial answer is kept]" : "[stopped]");
      } else {
        std::fprintf(stderr, "%s%s\n",
                     out.started ? "[answer cut off] " : "error: ", out.failure->message.c_str());
        if (!out.started) quiet("(your message is kept; /retry sends it again)");
      }
      return;
    }
    if (!out.started) {
      quiet("(the model answered with no text: " +
            std::to_string(std::max<std::int64_t>(out.completion_tokens, 0)) + " tokens)");
      return;
    }
    char line[200];
    std::snprintf(line, sizeof line, "%.2f s to first token · %.1f tokens/s · %lld tokens%s",
                  out.ttft_ms / 1000.0, out.tokens_per_s(), static_cast<long long>(out.completion_tokens),
                  out.cut_at_length() ? " · stopped at max_tokens" : "");
    quiet(line);
  }

  // The in-memory copy of what was just written to the store (read back whole only when a session opens).
  void remember(std::int64_t id, std::string_view role, std::string_view content, std::string_view state) {
    StoredMessage message;
    message.id = id;
    message.role = role;
    message.content = content;
    message.state = state;
    messages_.push_back(std::move(message));
  }

  // False when the user leaves.
  bool command(const std::string& text) {
    const auto space = text.find(' ');
    const std::string name = text.substr(0, space);
    const std::string arg =
        space == std::string::npos ? std::string() : std::string(text::trim(text.substr(space + 1)));
    if (name == "/exit" || name == "/quit") return false;
    if (name == "/help") {
      std::fputs(kHelp, stdout);
    } else if (name == "/new") {
      session_ = store_.create(arg, options_.system.empty() ? config_.system_prompt : options_.system,
                               config_.model);
      messages_.clear();
      quiet("session " + session_.name);
    } else if (name == "/sessions") {
      int shown = 0;
      for (const auto& s : store_.list()) {
        if (++shown > 15) break;
        std::printf("%s %-24s %4lld messages  %s  %s\n", s.id == session_.id ? "*" : " ", s.name.c_str(),
                    static_cast<long long>(s.message_count), format_local_time(s.updated_ms).c_str(),
                    s.preview.substr(0, 40).c_str());
      }
    } else if (name == "/system") {
      if (arg.empty()) {
        std::printf("%s\n",
                    session_.system_prompt.empty() ? "(no system prompt)" : session_.system_prompt.c_str());
      } else {
        session_.system_prompt = arg == "off" ? std::string() : arg;
        store_.set_system_prompt(session_.id, session_.system_prompt);
        quiet(arg == "off" ? "system prompt cleared" : "system prompt set");
      }
    } else if (name == "/set") {
      set(arg);
    } else if (name == "/retry") {
      retry();
    } else if (name == "/save") {
      const std::string file = arg.empty() ? session_.name + ".md" : arg;
      std::FILE* out = std::fopen(file.c_str(), "w");
      if (out == nullptr) {
        std::fprintf(stderr, "cannot write %s: %s\n", file.c_str(), std::strerror(errno));
      } else {
        const std::string md = export_markdown(session_, messages_);
        std::fwrite(md.data(), 1, md.size(), out);
        std::fclose(out);
        quiet("saved " + file);
      }
    } else {
      std::fprintf(stderr, "unknown command %s; /help lists them\n", name.c_str());
    }
    return true;
  }

  void set(const std::string& arg) {
    const auto space = arg.find(' ');
    const std::string key = arg.substr(0, space);
    const std::string value =
        space == std::string::npos ? std::string() : std::string(text::trim(arg.substr(space + 1)));
    try {
      if (key == "temperature" && !value.empty()) {
        const double t = std::stod(value);
        if (t < 0 || t > 2) throw std::out_of_range("0 to 2");
        config_.temperature = t;
      } else if ((key == "max_tokens" || key == "max-tokens") && !value.empty()) {
        const long long n = std::stoll(value);
        if (n < 1) throw std::out_of_range("at least 1");
        config_.max_tokens = n;
      } else if (key == "model" && !value.empty()) {
        config_.model = value;
        store_.set_model(session_.id, value);
      } else {
        std::fprintf(stderr, "usage: /set temperature 0.2 | /set max_tokens 512 | /set model NAME\n");
        return;
      }
      quiet(key + " = " + value);
    } catch (const std::exception&) {
      std::fprintf(stderr,
                   "/set %s: \"%s\" is not allowed (temperature: 0 to 2; max_tokens: an integer >= 1)\n",
                   key.c_str(), value.c_str());
    }
  }

  void retry() {
    if (!messages_.empty() && messages_.back().role == "assistant") {
      store_.delete_message(messages_.back().id);
      messages_.pop_back();
    }
    if (messages_.empty() || messages_.back().role != "user") {
      std::fprintf(stderr, "/retry: there is no question to ask again\n");
      return;
    }
    answer();
  }

  const ChatOptions& options_;
  ClientConfig& config_;
  ApiClient& client_;
  SessionStore& store_;
  SessionInfo session_;
  std::vector<StoredMessage> messages_;
  double tokens_per_byte_ = 0.35;  // until the server has counted a prompt
  bool dim_ = false;
};

}  // namespace

int run_chat(const ChatOptions& options) {
  std::setlocale(LC_CTYPE, "");
  if (MB_CUR_MAX == 1) std::setlocale(LC_CTYPE, "C.UTF-8");  // a bare "C" locale would garble UTF-8 input
  try {
    ClientConfig config = load_client_config(options.search, options.overrides);
    ApiClient client(config);
    const fs::path db = !options.db.empty()          ? fs::path(options.db)
                        : !config.session_db.empty() ? fs::path(config.session_db)
                                                     : SessionStore::default_path();
    SessionStore store(db);
    ChatLoop loop(options, config, client, store);
    return loop.run();
  } catch (const ConfigError& e) {
    return cli_error("clawbot chat", e.what(), 2);
  } catch (const StoreError& e) {
    return cli_error("clawbot chat", e.what(), 1);
  }
}

}  // namespace clawbot::client
