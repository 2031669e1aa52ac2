// What libllama logs as an error reaches only the capture of the thread that logged it, and only while the
// capture lives: no model needed, the lines go through the log callback the engine installs.
#include "engine/llama_log.h"

#include <thread>

#include <gtest/gtest.h>
#include <llama.h>

#include "engine/engine.h"

namespace clawbot::engine {
namespace {

void log_through_engine(ggml_log_level level, const char* text) {
  ggml_log_callback callback = nullptr;
  void* user_data = nullptr;
  llama_log_get(&callback, &user_data);
  ASSERT_NE(callback, nullptr);
  callback(level, text, user_data);
}

TEST(LlamaErrorCapture, KeepsOnlyThisThreadsErrorsWhileItLives) {
  init_backend(/*verbose=*/false);
  log_through_engine(GGML_LOG_LEVEL_ERROR, "an error from before the capture\n");
  detail::LlamaErrorCapture capture;
  std::thread([] { log_through_engine(GGML_LOG_LEVEL_ERROR, "another thread's load failed\n"); }).join();
  EXPECT_EQ(capture.take(), "") << "an error of another thread (or from before) would be misattributed";
  log_through_engine(GGML_LOG_LEVEL_WARN, "a warning\n");
  log_through_engine(GGML_LOG_LEVEL_ERROR, "this load ");
  log_through_engine(GGML_LOG_LEVEL_CONT, "failed\n");
  EXPECT_EQ(capture.take(), "this load failed");
  EXPECT_EQ(capture.take(), "");
}

TEST(LlamaErrorCapture, NestedCapturesKeepTheirOwn) {
  init_backend(/*verbose=*/false);
  detail::LlamaErrorCapture outer;
  {
    detail::LlamaErrorCapture inner;
    log_through_engine(GGML_LOG_LEVEL_ERROR, "inner failure\n");
    EXPECT_EQ(inner.take(), "inner failure");
  }
  EXPECT_EQ(outer.take(), "");
  log_through_engine(GGML_LOG_LEVEL_ERROR, "outer failure\n");
  EXPECT_EQ(outer.take(), "outer failure");
}

}  // namespace
}  // namespace clawbot::engine
