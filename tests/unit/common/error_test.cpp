#include "common/error.h"

#include <gtest/gtest.h>

namespace clawbot {
namespace {

TEST(ErrorTest, InvalidRequestIsOpenAiShaped) {
  const auto body =
      to_json({ErrorKind::invalid_request, "'temperature' must be a number", "temperature", ""});
  EXPECT_EQ(http_status(ErrorKind::invalid_request), 400);
  EXPECT_EQ(body["error"]["message"], "'temperature' must be a number");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "temperature");
  EXPECT_EQ(body["error"]["code"], "invalid_request");
}

TEST(ErrorTest, MissingParamIsNullAndCodeOverrides) {
  const auto body = to_json({ErrorKind::invalid_request, "bad json", "", "invalid_json"});
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_EQ(body["error"]["code"], "invalid_json");
}

TEST(ErrorTest, EachKindHasItsStatus) {
  EXPECT_EQ(http_status(ErrorKind::context_exceeded), 400);
  EXPECT_EQ(http_status(ErrorKind::unauthorized), 401);
  EXPECT_EQ(http_status(ErrorKind::forbidden), 403);
  EXPECT_EQ(http_status(ErrorKind::not_found), 404);
  EXPECT_EQ(http_status(ErrorKind::method_not_allowed), 405);
  EXPECT_EQ(http_status(ErrorKind::payload_too_large), 413);
  EXPECT_EQ(http_status(ErrorKind::rate_limited), 429);
  EXPECT_EQ(http_status(ErrorKind::unavailable), 503);
  EXPECT_EQ(http_status(ErrorKind::internal), 500);
  EXPECT_EQ(to_json({ErrorKind::context_exceeded, "m", "", ""})["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(to_json({ErrorKind::payload_too_large, "m", "", ""})["error"]["code"], "request_too_large");
}

// Ollama's shape under /api/, but not on clawbot's own monitoring routes there (the dashboard reads
// OpenAI's).
TEST(ErrorTest, TheShapeFollowsThePathsProtocol) {
  const Error error{ErrorKind::invalid_request, "'since' must be a time", "since", ""};
  EXPECT_EQ(error_json_for_path("/api/chat", error), nlohmann::json({{"error", "'since' must be a time"}}));
  EXPECT_EQ(error_json_for_path("/api/metrics/history", error)["error"]["param"], "since");
  EXPECT_EQ(error_json_for_path("/api/alerts", error)["error"]["type"], "invalid_request_error");
  EXPECT_EQ(error_json_for_path("/v1/messages", error)["type"], "error");
  EXPECT_EQ(error_json_for_path("/v1/chat/completions", error)["error"]["param"], "since");
}

}  // namespace
}  // namespace clawbot
