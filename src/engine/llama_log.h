// Internal to the engine: why a libllama call failed, to put into our own messages. libllama says it only in
// its log, so the error lines it logs are kept per thread, and only while a capture made on that thread
// lives: two models loading at once, or an error logged long before, never lend each other their text.
#pragma once

#include <string>
#include <utility>

namespace clawbot::engine::detail {

// Make one on the thread that is about to call libllama, right before the call; take() after it fails.
class LlamaErrorCapture {
 public:
  LlamaErrorCapture() noexcept;
  ~LlamaErrorCapture();
  LlamaErrorCapture(const LlamaErrorCapture&) = delete;
  LlamaErrorCapture& operator=(const LlamaErrorCapture&) = delete;

  // The last error line libllama logged on this thread since the capture began; empty when none.
  std::string take() { return std::exchange(last_error_, {}); }

  // For the log callback: keeps `line` in this thread's innermost capture, when there is one.
  static void keep(const std::string& line);

 private:
  std::string last_error_;
  LlamaErrorCapture* outer_;  // the capture this one hides while it lives (nested calls), or null
};

}  // namespace clawbot::engine::detail
