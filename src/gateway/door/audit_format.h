// Internal to src/gateway/door: one audit record as a line of text, and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gateway/door/door.h"

namespace clawbot::gateway::door::detail {

// The prev of the first record.
inline const std::string genesis_hash(64, '0');

// The record's JSON up to, not including, `,"hash":...}`: what the HMAC covers.
std::string audit_body(std::int64_t seq, const AuditRecord& record, std::string_view prev);
// body + ,"hash":"<hash>"} + newline.
std::string audit_line(std::string_view body, std::string_view hash);
// The hex HMAC of a body.
std::string audit_mac(std::string_view secret, std::string_view body);

struct ParsedAuditLine {
  nlohmann::json fields;  // the whole object
  std::int64_t seq = 0;
  std::string prev, hash;
  std::string_view body;  // the covered bytes; empty when the line does not have the writer's shape
};
// nullopt (and the reason in `error`) for a line that is not a record: not JSON, or no seq, prev or hash.
std::optional<ParsedAuditLine> parse_audit_line(std::string_view line, std::string& error);

}  // namespace clawbot::gateway::door::detail
