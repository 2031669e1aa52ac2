// The files `kb add` reads: paths given, directories walked, include and exclude globs.
#include <fnmatch.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "kb/kb.h"

namespace clawbot::kb {

namespace {

bool any_glob(std::span<const std::string> globs, const std::string& relative, const std::string& name) {
  for (const auto& g : globs) {
    // A glob with a '/' is matched against the path under the directory given, one without against the
    // file name ("*.md").
    const std::string& subject = g.find('/') == std::string::npos ? name : relative;
    if (fnmatch(g.c_str(), subject.c_str(), 0) == 0) return true;
  }
  return false;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ClawbotError(ErrorKind::invalid_request, path.string() + ": cannot open");
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw ClawbotError(ErrorKind::invalid_request, path.string() + ": cannot read");
  return out.str();
}

}  // namespace

std::vector<SourceDocument> collect_files(std::span<const std::string> paths,
                                          std::span<const std::string> include,
                                          std::span<const std::string> exclude) {
  std::vector<SourceDocument> out;
  std::set<std::string> seen;
  const auto add = [&](const std::filesystem::path& file, const std::string& relative, bool named) {
    const std::string name = file.filename().string();
    const auto kind = kind_for_path(name);
    if (!kind) {
      if (named) throw_invalid(file.string() + ": not a kind of file kb reads (.txt .md .html .pdf .docx)");
      return;
    }
    if (!include.empty() && !any_glob(include, relative, name)) return;
    if (any_glob(exclude, relative, name)) return;
    std::error_code ec;
    const std::string absolute = std::filesystem::weakly_canonical(file, ec).string();
    const std::string source = ec ? std::filesystem::absolute(file).string() : absolute;
    if (!seen.insert(source).second) return;
    out.push_back({source, *kind, [source] { return read_file(source); }});
  };
  for (const auto& p : paths) {
    const std::filesystem::path path(p);
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      std::vector<std::filesystem::path> files;
      for (auto it = std::filesystem::recursive_directory_iterator(
               path, std::filesystem::directory_options::skip_permission_denied, ec);
           !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec)) files.push_back(it->path());
      }
      if (ec) throw_invalid(path.string() + ": cannot walk the directory: " + ec.message());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) add(f, std::filesystem::relative(f, path, ec).string(), false);
    } else if (std::filesystem::is_regular_file(path, ec)) {
      add(path, path.filename().string(), true);
    } else {
      throw_invalid(path.string() + ": no such file or directory");
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.source < b.source; });
  return out;
}

}  // namespace clawbot::kb
