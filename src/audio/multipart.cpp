#include "audio/multipart.h"

#include <algorithm>

#include "common/error.h"
#include "common/text.h"

namespace clawbot::audio {
namespace {

using text::lower;

// Header values are trimmed of blanks only (RFC 9110 OWS).
std::string_view trim(std::string_view s) {
  return text::trim(s, text::blanks);
}

[[noreturn]] void bad_form(const std::string& message) {
  throw_invalid("multipart/form-data body: " + message, {}, "invalid_multipart");
}

// `key=value` parameters after the first `;` of a header value; values may be quoted (with \-escapes).
// Returns the value of `wanted` (lower-case name), or nothing.
bool header_parameter(std::string_view value, std::string_view wanted, std::string& out) {
  std::size_t i = value.find(';');
  while (i != std::string_view::npos && i < value.size()) {
    ++i;
    while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
    const std::size_t eq = value.find_first_of("=;", i);
    if (eq == std::string_view::npos || value[eq] == ';') {
      i = eq;
      continue;
    }
    const std::string key = lower(trim(value.substr(i, eq - i)));
    std::string parsed;
    std::size_t j = eq + 1;
    while (j < value.size() && (value[j] == ' ' || value[j] == '\t')) ++j;
    if (j < value.size() && value[j] == '"') {
      ++j;
      bool closed = false;
      for (; j < value.size(); ++j) {
        if (value[j] == '\\' && j + 1 < value.size()) {
          parsed += value[++j];
        } else if (value[j] == '"') {
          closed = true;
          ++j;
          break;
        } else {
          parsed += value[j];
        }
      }
      if (!closed) bad_form("an unterminated quoted parameter in a part header");
      i = value.find(';', j);
    } else {
      const std::size_t end = value.find(';', j);
      parsed = std::string(
          trim(value.substr(j, end == std::string_view::npos ? std::string_view::npos : end - j)));
      i = end;
    }
    if (key == wanted) {
      out = std::move(parsed);
      return true;
    }
  }
  return false;
}

void parse_part_headers(std::string_view block, FormPart& part) {
  bool disposition = false;
  while (!block.empty()) {
    const std::size_t eol = block.find("\r\n");
    const std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view() : block.substr(eol + 2);
    if (line.empty()) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) bad_form("a part header line without ':'");
    const std::string name = lower(trim(line.substr(0, colon)));
    const std::string_view value = trim(line.substr(colon + 1));
    if (name == "content-disposition") {
      if (lower(trim(value.substr(0, value.find(';')))) != "form-data")
        bad_form("a part's Content-Disposition is not form-data");
      disposition = true;
      if (!header_parameter(value, "name", part.name)) bad_form("a part without a name");
      header_parameter(value, "filename", part.filename);
    } else if (name == "content-type") {
      part.content_type = std::string(value);
    }
  }
  if (!disposition) bad_form("a part without Content-Disposition");
}

}  // namespace

std::string form_boundary(std::string_view content_type) {
  const std::string type = lower(trim(content_type.substr(0, content_type.find(';'))));
  if (type != "multipart/form-data")
    throw_invalid("this route takes multipart/form-data (a 'file' part and form fields), not '" +
                      (type.empty() ? std::string("no Content-Type") : type.substr(0, 100)) + "'",
                  {}, "invalid_content_type");
  std::string boundary;
  if (!header_parameter(content_type, "boundary", boundary) || boundary.empty() || boundary.size() > 70)
    throw_invalid("multipart/form-data without a valid boundary parameter (1 to 70 characters)", {},
                  "invalid_content_type");
  return boundary;
}

std::vector<FormPart> parse_form(std::string_view body, std::string_view boundary, FormLimits limits) {
  const std::string delimiter = "--" + std::string(boundary);
  // The first delimiter starts the body or a line (a preamble before it is ignored).
  std::size_t at = 0;
  if (body.substr(0, delimiter.size()) != delimiter) {
    const std::size_t found = body.find("\r\n" + delimiter);
    if (found == std::string_view::npos) bad_form("no boundary line; is the boundary parameter right?");
    at = found + 2;
  }
  const std::string next_delimiter = "\r\n" + delimiter;
  std::vector<FormPart> parts;
  for (;;) {
    at += delimiter.size();
    if (body.substr(at, 2) == "--") return parts;                            // the close delimiter
    while (at < body.size() && (body[at] == ' ' || body[at] == '\t')) ++at;  // transport padding
    if (body.substr(at, 2) != "\r\n") bad_form("a boundary line not followed by CRLF");
    at += 2;
    if (parts.size() == limits.max_parts)
      bad_form("more than " + std::to_string(limits.max_parts) + " parts");
    const std::size_t header_end = body.find("\r\n\r\n", at);
    const bool empty_headers = body.substr(at, 2) == "\r\n";
    if (!empty_headers &&
        (header_end == std::string_view::npos || header_end - at > limits.max_part_header_bytes))
      bad_form("a part's headers are longer than " + std::to_string(limits.max_part_header_bytes) +
               " bytes or never end");
    FormPart part;
    const std::size_t data_start = empty_headers ? at + 2 : header_end + 4;
    parse_part_headers(body.substr(at, data_start - at), part);
    const std::size_t data_end = body.find(next_delimiter, data_start);
    if (data_end == std::string_view::npos)
      bad_form("it ends before its closing boundary (truncated upload?)");
    part.data = body.substr(data_start, data_end - data_start);
    parts.push_back(std::move(part));
    at = data_end + 2;
  }
}

FormBody build_form(const std::vector<std::pair<std::string, std::string>>& fields,
                    std::string_view file_name, std::string_view file_bytes) {
  std::string boundary = "clawbot-form-boundary";
  const auto occurs = [&](const std::string& b) {
    if (file_bytes.find(b) != std::string_view::npos) return true;
    for (const auto& [name, value] : fields)
      if (value.find(b) != std::string::npos) return true;
    return false;
  };
  for (unsigned n = 1; occurs(boundary); ++n) boundary = "clawbot-form-boundary-" + std::to_string(n * 7919u);
  const auto quoted = [](std::string_view s) {
    std::string out;
    for (const char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if (c != '\r' && c != '\n') out += c;
    }
    return out;
  };
  FormBody form;
  form.content_type = "multipart/form-data; boundary=" + boundary;
  for (const auto& [name, value] : fields)
    form.body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + quoted(name) +
                 "\"\r\n\r\n" + value + "\r\n";
  form.body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
               quoted(file_name) + "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
  form.body += file_bytes;
  form.body += "\r\n--" + boundary + "--\r\n";
  return form;
}

const FormPart* find_part(const std::vector<FormPart>& parts, std::string_view name) {
  const auto it = std::find_if(parts.begin(), parts.end(), [&](const FormPart& p) { return p.name == name; });
  return it == parts.end() ? nullptr : &*it;
}

}  // namespace clawbot::audio
