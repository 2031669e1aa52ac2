// `clawbot models list|show|pull`.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "audio/whisper_file.h"
#include "common/cli_error.h"
#include "common/error.h"
#include "common/model_path.h"
#include "common/text.h"
#include "ops/file_io.h"
#include "ops/http_fetch.h"
#include "ops/integrity.h"
#include "ops/plan.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

// What `models list` shows of one file.
struct ModelSummary {
  std::string name;
  std::string path;
  std::uint64_t size = 0;
  std::string architecture;
  std::uint64_t parameters = 0;
  std::string quantization;
  std::uint32_t context = 0;
  bool chat_template = false;
  bool embedding = false;
  bool vocab_only = false;
  bool header_only = false;
  std::string error;      // the file could not be read
  std::string whisper;    // a whisper.cpp model (.bin): its size ("tiny"); empty for GGUF
  std::string synthetic;  // a file `models synth` wrote: its label
};

// A whisper.cpp model file (legacy ggml format, speech to text) in the list beside the GGUF files.
ModelSummary summarize_whisper(const fs::path& path, ModelSummary s) {
  try {
    const audio::WhisperFileInfo info = audio::read_whisper_file(path);
    s.architecture = "whisper";
    s.whisper = info.size_name;
    s.parameters = info.n_params;
    s.quantization = info.weight_type;
    s.context = static_cast<std::uint32_t>(info.hparams.n_audio_ctx);
    s.synthetic = info.synthetic;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

ModelSummary summarize(const fs::path& path) {
  ModelSummary s;
  s.name = path.filename().string();
  s.path = path.string();
  std::error_code ec;
  s.size = fs::file_size(path, ec);
  if (path.extension() != ".gguf" && audio::is_whisper_file(path))
    return summarize_whisper(path, std::move(s));
  try {
    const GgufFile file = read_gguf(s.path);
    s.architecture = file.architecture();
    s.chat_template = file.find("tokenizer.chat_template") != nullptr;
    s.vocab_only = file.tensors.empty();
    s.header_only = !s.vocab_only && !file.has_tensor_data();
    if (!s.vocab_only) {
      const ModelDims dims = model_dims(file);
      s.parameters = dims.n_params;
      s.quantization = dims.file_type;
      s.context = dims.n_ctx_train;
      s.embedding = !dims.causal || file.get_int(file.arch_key("pooling_type")).value_or(0) > 0;
    }
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

// hf://org/repo/file -> org/repo and file, for the message.
bool is_hf(const std::string& url) {
  return url.starts_with("hf://");
}

std::string file_name_of(const std::string& url) {
  std::string path = url.substr(0, url.find('?'));
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A sidecar "<hex>  <name>" or "<hex>" line; empty when it is not one.
std::string parse_sidecar(const std::string& text) {
  std::string hex;
  for (char c : text) {
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      hex += text::lower(c);
    } else {
      break;
    }
  }
  return hex.size() == 64 ? hex : std::string();
}

bool valid_sha256(const std::string& hex) {
  return text::is_hex(hex, 64);
}

}  // namespace

std::string resolve_model_url(const std::string& url) {
  if (!is_hf(url)) return url;
  // hf://org/repo/path/to/file.gguf -> https://huggingface.co/org/repo/resolve/main/path/to/file.gguf
  const std::string rest = url.substr(5);
  const auto first = rest.find('/');
  const auto second = first == std::string::npos ? std::string::npos : rest.find('/', first + 1);
  if (second == std::string::npos || second + 1 >= rest.size()) {
    throw std::invalid_argument("'" + url + "' is not hf://ORG/REPO/FILE (for example " +
                                "hf://Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf)");
  }
  return "https://huggingface.co/" + rest.substr(0, second) + "/resolve/main/" + rest.substr(second + 1);
}

std::string local_model_file(const std::string& name) {
  return clawbot::require_model_file(name);
}

int run_models_list(const ModelsListOptions& options) {
  std::vector<ModelSummary> models;
  for (const auto& dir : model_dirs()) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (!entry.is_regular_file(ec)) continue;
      if (entry.path().extension() == ".gguf" ||
          (entry.path().extension() == ".bin" && audio::is_whisper_file(entry.path())))
        files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) models.push_back(summarize(f));
  }
  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& m : models) {
      nlohmann::json j = {{"name", m.name},
                          {"path", m.path},
                          {"size", m.size},
                          {"architecture", m.architecture},
                          {"parameters", m.parameters},
                          {"quantization", m.quantization},
                          {"context", m.context},
                          {"chat_template", m.chat_template},
                          {"embedding", m.embedding},
                          {"vocab_only", m.vocab_only},
                          {"header_only", m.header_only}};
      if (!m.whisper.empty()) {
        j["task"] = "transcription";
        j["whisper_size"] = m.whisper;
      }
      if (!m.synthetic.empty()) j["synthetic"] = m.synthetic;
      if (!m.error.empty()) j["error"] = m.error;
      out.push_back(j);
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (models.empty()) {
    std::printf("no .gguf or whisper .bin files in %s\n", model_dirs_description().c_str());
    return 0;
  }
  std::size_t width = 4;
  for (const auto& m : models) width = std::max(width, m.name.size());
  std::printf("%-*s  %10s  %-10s  %8s  %-8s  %7s  %-4s  %-5s\n", static_cast<int>(width), "NAME", "SIZE",
              "ARCH", "PARAMS", "QUANT", "CONTEXT", "CHAT", "EMBED");
  for (const auto& m : models) {
    if (!m.error.empty()) {
      std::printf("%-*s  %10s  unreadable: %s\n", static_cast<int>(width), m.name.c_str(),
                  detail::format_binary_size(static_cast<double>(m.size)).c_str(), m.error.c_str());
      continue;
    }
    std::printf("%-*s  %10s  %-10s  %8s  %-8s  %7u  %-4s  %-5s%s\n", static_cast<int>(width), m.name.c_str(),
                detail::format_binary_size(static_cast<double>(m.size)).c_str(), m.architecture.c_str(),
                m.vocab_only ? "-" : detail::format_count(m.parameters).c_str(),
                m.vocab_only ? "-" : m.quantization.c_str(), m.context, m.chat_template ? "yes" : "no",
                m.embedding ? "yes" : "no",
                m.vocab_only    ? "  (vocab only)"
                : m.header_only ? "  (header only)"
                : !m.whisper.empty()
                    ? (m.synthetic.empty() ? "  (speech to text)" : "  (speech to text, synthetic)")
                    : "");
  }
  std::printf("(%zu files in %s)\n", models.size(), model_dirs_description().c_str());
  return 0;
}

int run_models_show(const ModelsShowOptions& options) {
  try {
    const std::string location = is_url(options.model) || is_hf(options.model)
                                     ? resolve_model_url(options.model)
                                     : local_model_file(options.model);
    const GgufFile file = read_gguf(location);
    if (options.json) {
      nlohmann::json meta = nlohmann::json::object();
      for (const auto& [key, value] : file.metadata) meta[key] = value.to_text(16);
      nlohmann::json out = {{"source", file.source},
                            {"gguf_version", file.version},
                            {"file_bytes", file.file_size},
                            {"tensor_count", file.tensors.size()},
                            {"tensor_bytes", file.tensor_bytes()},
                            {"header_only", !file.has_tensor_data()},
                            {"metadata", meta}};
      if (options.tensors) {
        nlohmann::json tensors = nlohmann::json::array();
        for (const auto& t : file.tensors) {
          tensors.push_back({{"name", t.name},
                             {"type", std::string(ggml_type_by_id(t.type_id)->name)},
                             {"dims", t.dims},
                             {"bytes", t.bytes()}});
        }
        out["tensors"] = tensors;
      }
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    std::printf("%s\n", file.source.c_str());
    std::printf("  GGUF version %u, %s, %zu tensors (%s)%s\n", file.version,
                detail::format_binary_size(static_cast<double>(file.file_size)).c_str(), file.tensors.size(),
                detail::format_binary_size(static_cast<double>(file.tensor_bytes())).c_str(),
                file.tensors.empty()      ? ", vocab only"
                : !file.has_tensor_data() ? ", header only (no weights)"
                                          : "");
    std::size_t width = 0;
    for (const auto& [key, value] : file.metadata) width = std::max(width, key.size());
    for (const auto& [key, value] : file.metadata) {
      std::printf("  %-*s  %s\n", static_cast<int>(width), key.c_str(), value.to_text().c_str());
    }
    if (options.tensors) {
      for (const auto& t : file.tensors) {
        std::string dims;
        for (auto d : t.dims) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
        std::printf("  tensor %-40s %-8s %-24s %s\n", t.name.c_str(),
                    std::string(ggml_type_by_id(t.type_id)->name).c_str(), dims.c_str(),
                    detail::format_binary_size(static_cast<double>(t.bytes())).c_str());
      }
    }
    return 0;
  } catch (const std::exception& e) {
    return cli_error("clawbot models show", e.what(), 1);
  }
}

int run_models_pull(const ModelsPullOptions& options) {
  const char* me = "clawbot models pull";
  try {
    const std::string url = resolve_model_url(options.url);
    if (!is_url(url)) {
      throw std::invalid_argument("'" + options.url + "' is not an http://, https:// or hf:// URL");
    }
    std::string expected = options.sha256;
    expected = text::lower(expected);
    if (!expected.empty() && !valid_sha256(expected)) {
      throw std::invalid_argument("--sha256 '" + options.sha256 + "' is not 64 hexadecimal characters");
    }
    std::string dir = options.output_dir;
    if (dir.empty()) {
      const auto dirs = model_dirs();
      dir = dirs.empty() ? "." : dirs.front();
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::is_directory(dir)) {
      throw ClawbotError(ErrorKind::internal,
                         "cannot create the directory '" + dir + "'" + (ec ? " (" + ec.message() + ")" : ""));
    }
    const std::string name = file_name_of(url);
    if (name.empty()) throw std::invalid_argument("'" + url + "' names no file");
    const fs::path target = fs::path(dir) / name;
    const fs::path part = fs::path(dir) / (name + ".part");

    // No --sha256: a sidecar beside the file (URL.sha256), when the server has one.
    std::string sum_source = "--sha256";
    if (expected.empty()) {
      try {
        auto sidecar = http_get_range(url + ".sha256", 0, std::nullopt, 1u << 16);
        if (sidecar.status == 200 || sidecar.status == 206) {
          expected = parse_sidecar(sidecar.body);
          sum_source = "the sidecar " + name + ".sha256";
        }
      } catch (const std::exception&) {
        // No sidecar (404) or an error fetching it: the download goes on unchecked, and says so below.
      }
    }

    const bool already_there = fs::exists(target);
    if (already_there) {
      std::fprintf(stderr, "%s: %s is already there\n", me, target.string().c_str());
    } else {
      std::uint64_t have = fs::exists(part) ? fs::file_size(part) : 0;
      if (have > 0)
        std::fprintf(stderr, "%s: resuming %s at %s\n", me, part.string().c_str(),
                     detail::format_binary_size(double(have)).c_str());
      std::ofstream out(part, std::ios::binary | std::ios::app);
      if (!out) throw ClawbotError(ErrorKind::internal, "cannot write " + part.string());
      // Pieces grow from 1 MiB to 64 MiB: a cut connection loses little, a good one makes few requests.
      std::uint64_t piece = 1u << 20;
      constexpr std::uint64_t max_piece = 64u << 20;
      std::optional<std::uint64_t> total;
      int failures = 0;
      constexpr int max_failures = 5;
      const bool progress = !options.no_progress && ::isatty(STDERR_FILENO);
      std::optional<detail::ProgressBar> bar;  // drawn once the size is known
      for (;;) {
        if (total && have >= *total) break;
        RangeResponse response;
        try {
          response = http_get_range(url, have, have + piece - 1, have == 0 ? max_piece + 1024 : piece + 1024);
        } catch (const HttpStatusError&) {
          throw;  // 404, 403, ...: asking again will not help
        } catch (const std::exception& e) {
          if (++failures > max_failures) {
            out.close();
            throw ClawbotError(ErrorKind::internal,
                               std::string(e.what()) + "; kept " + detail::format_binary_size(double(have)) +
                                   " in " + part.string() + ": run the same command again to resume");
          }
          std::fprintf(stderr, "%s: %s; resuming at byte %llu (try %d of %d)\n", me, e.what(),
                       static_cast<unsigned long long>(have), failures, max_failures);
          piece = 1u << 20;
          std::this_thread::sleep_for(std::chrono::milliseconds(200 << failures));
          continue;
        }
        if (response.status == 416) {
          if (total || response.total_size == have) break;  // the .part already holds the whole file
          throw ClawbotError(ErrorKind::internal, url + " refused the range at byte " + std::to_string(have) +
                                                      " (the file there is " +
                                                      std::to_string(response.total_size) +
                                                      " bytes); delete " + part.string() + " to start again");
        }
        if (response.status == 200) {
          // The server ignores ranges and sent the whole file: start over with it.
          if (have > 0) std::fprintf(stderr, "%s: the server does not resume; starting over\n", me);
          out.close();
          out.open(part, std::ios::binary | std::ios::trunc);
          have = 0;
          total = response.total_size;
        } else if (!total) {
          total = response.total_size;
        } else if (response.total_size != *total) {
          throw ClawbotError(ErrorKind::internal, url + " changed size during the download (" +
                                                      std::to_string(*total) + " then " +
                                                      std::to_string(response.total_size) +
                                                      " bytes); delete " + part.string() + " and pull again");
        }
        out.write(response.body.data(), static_cast<std::streamsize>(response.body.size()));
        out.flush();
        if (!out) throw ClawbotError(ErrorKind::internal, "cannot write " + part.string() + " (disk full?)");
        have += response.body.size();
        failures = 0;
        piece = std::min(piece * 2, max_piece);
        if (progress && total) {
          if (!bar) bar.emplace("pull " + name, *total, true);
          bar->update(have);
        }
        if (response.body.empty()) break;
      }
      out.close();
      if (bar) bar->finish();
      if (total && have != *total) {
        throw ClawbotError(ErrorKind::internal, "the download stopped at " + std::to_string(have) + " of " +
                                                    std::to_string(*total) +
                                                    " bytes; run the same command again to resume");
      }
      if (expected.empty()) {
        fs::rename(part, target);
      }
    }

    if (!expected.empty()) {
      const fs::path check = fs::exists(part) ? part : target;
      const FileDigests digests =
          hash_file(check.string(), false, !options.no_progress && ::isatty(STDERR_FILENO));
      if (digests.sha256 != expected) {
        // A download of ours that does not match is removed; a file that was already there is left alone.
        if (!already_there) fs::remove(check, ec);
        std::fprintf(
            stderr,
            "%s: checksum mismatch for %s: expected %s (from %s), got %s; %s. A changed file on the server "
            "or a damaged transfer: check the URL and the sum, then pull again\n",
            me, name.c_str(), expected.c_str(), sum_source.c_str(), digests.sha256.c_str(),
            already_there ? "the file that was already there is left as it is" : "the download was removed");
        return 1;
      }
      if (check == part) fs::rename(part, target);
      std::fprintf(stderr, "%s: SHA-256 %s matches %s\n", me, digests.sha256.c_str(), sum_source.c_str());
    } else {
      std::fprintf(stderr,
                   "%s: no checksum to compare with (pass --sha256, or publish %s.sha256 beside it)\n", me,
                   name.c_str());
    }
    std::printf("%s\n", target.string().c_str());
    return 0;
  } catch (const std::exception& e) {
    return cli_error(me, e.what(), 1);
  }
}

}  // namespace clawbot::ops
