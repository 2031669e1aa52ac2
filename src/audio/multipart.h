// multipart/form-data (RFC 7578), as OpenAI's audio routes take their uploads: a bounded parser over a body
// already in memory. Parts are views into the body. Every problem is a ClawbotError invalid_request naming
// it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clawbot::audio {

struct FormPart {
  std::string name;
  std::string filename;  // empty for a plain field
  std::string content_type;
  std::string_view data;
};

struct FormLimits {
  std::size_t max_parts = 64;
  std::size_t max_part_header_bytes = 8 << 10;  // one part's header block
};

// The boundary of a `Content-Type: multipart/form-data; boundary=...` header; throws when the type is
// another or the boundary is missing or invalid (1 to 70 characters).
std::string form_boundary(std::string_view content_type);

std::vector<FormPart> parse_form(std::string_view body, std::string_view boundary, FormLimits limits = {});

// A form body (for `clawbot transcribe` and tests): `fields` as plain parts, then the file. The boundary is
// chosen so that it does not occur in any part.
struct FormBody {
  std::string content_type;
  std::string body;
};
FormBody build_form(const std::vector<std::pair<std::string, std::string>>& fields,
                    std::string_view file_name, std::string_view file_bytes);

// The first part named `name`, or nullptr.
const FormPart* find_part(const std::vector<FormPart>& parts, std::string_view name);

}  // namespace clawbot::audio
