#include "common/json_check.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/json_config.h"
#include "common/store_error.h"

namespace clawbot {
namespace {

using json_check::Fault;
using nlohmann::json;

TEST(JsonCheckTest, IntegerTakesWholeNumbersInRange) {
  EXPECT_EQ(json_check::integer(json(5), 0, 10).value, 5);
  EXPECT_EQ(json_check::integer(json(5.0), 0, 10).value, 5);
  EXPECT_EQ(json_check::integer(json(5.5), 0, 10).fault, Fault::type);
  EXPECT_EQ(json_check::integer(json("5"), 0, 10).fault, Fault::type);
  EXPECT_EQ(json_check::integer(json(11), 0, 10).fault, Fault::range);
  EXPECT_EQ(json_check::integer(json(-1), 0, 10).fault, Fault::range);
  EXPECT_EQ(json_check::integer(json(18446744073709551615ull), 0, 10).fault, Fault::range);
  EXPECT_EQ(json_check::integer(json(1e19), INT64_MIN, INT64_MAX).fault, Fault::range);  // never cast
  EXPECT_EQ(json_check::integer(json(9223372036854775807ll), INT64_MIN, INT64_MAX).value, INT64_MAX);
}

TEST(JsonCheckTest, NumberTakesFiniteNumbersInRange) {
  EXPECT_EQ(json_check::number(json(0.5), 0, 1).value, 0.5);
  EXPECT_EQ(json_check::number(json(1), 0, 1).value, 1.0);
  EXPECT_EQ(json_check::number(json(true), 0, 1).fault, Fault::type);
  EXPECT_EQ(json_check::number(json(1.5), 0, 1).fault, Fault::range);
}

// The request helpers word their failures as the API always has, with the field as `param`.
TEST(JsonCheckTest, RequestFieldsNameTheFieldAndTheRule) {
  const json body = {{"n", 1.5},         {"top_k", 2000000}, {"top_p", "x"},
                     {"temperature", 3}, {"stream", "yes"},  {"max_tokens", nullptr}};
  const auto message = [](auto call) {
    try {
      call();
    } catch (const ClawbotError& e) {
      EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
      return e.error().param + ": " + e.what();
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([&] { json_check::integer_field(body, "n", 1, 16); }),
            "n: 'n' must be an integer, got 1.5");
  EXPECT_EQ(message([&] { json_check::integer_field(body, "top_k", 0, 1000000); }),
            "top_k: 'top_k' must be between 0 and 1000000, got 2000000");
  EXPECT_EQ(message([&] { json_check::number_field(body, "top_p", 0, 1); }),
            "top_p: 'top_p' must be a number, got \"x\"");
  EXPECT_EQ(message([&] { json_check::number_field(body, "temperature", 0, 2); }),
            "temperature: 'temperature' must be between 0.0 and 2.0, got 3");
  EXPECT_EQ(message([&] { json_check::bool_field(body, "stream", false); }),
            "stream: 'stream' must be true or false, got \"yes\"");
  EXPECT_EQ(json_check::integer_field(body, "max_tokens", 1, 10), std::nullopt);  // null: not given
  EXPECT_EQ(json_check::integer_field(body, "absent", 1, 10), std::nullopt);
  EXPECT_TRUE(json_check::bool_field(body, "absent", true));
}

// Configs use the same checks, worded as config errors naming the file.
TEST(JsonCheckTest, ConfigValidatorUsesTheSameRules) {
  std::vector<std::string> warnings;
  config::Validator v("clawbot.json", warnings);
  EXPECT_EQ(v.integer("max_tokens", json(8.0), 1, 10), 8);
  try {
    v.integer("max_tokens", json(8.5), 1, 10);
    FAIL() << "no error";
  } catch (const config::ConfigError& e) {
    EXPECT_STREQ(
        e.what(),
        "clawbot.json: \"max_tokens\" is 8.5 (a number with a fraction); allowed: an integer from 1 to 10");
  }
  EXPECT_THROW(v.number("temperature", json(2.5), 0, 2), config::ConfigError);
}

TEST(ErrorTest, TheApiEdgeAnswersInternalFailuresAsInternalErrors) {
  const Error bad = answer_for(ClawbotError(ErrorKind::invalid_request, "'n' must be an integer"));
  EXPECT_EQ(bad.kind, ErrorKind::invalid_request);
  EXPECT_EQ(bad.message, "'n' must be an integer");
  const Error disk = answer_for(ClawbotError(ErrorKind::internal, "cannot write the audit log"));
  EXPECT_EQ(disk.kind, ErrorKind::internal);
  EXPECT_EQ(disk.message, "internal error: cannot write the audit log");
  // A domain error (here the stores') is internal unless its thrower says otherwise: as before it derived from
  // ClawbotError, a 500 that says what failed.
  const Error store = answer_for(StoreError(StoreErrorKind::busy, "keys.db: the database is locked"));
  EXPECT_EQ(store.kind, ErrorKind::internal);
  EXPECT_EQ(store.message, "internal error: keys.db: the database is locked");
  const Error other = answer_for(std::runtime_error("boom"));
  EXPECT_EQ(other.kind, ErrorKind::internal);
  EXPECT_EQ(other.message, "internal error: boom");
}

}  // namespace
}  // namespace clawbot
