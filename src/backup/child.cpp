#include "backup/child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "common/error.h"

extern char** environ;

namespace clawbot::backup {

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd = std::exchange(other.fd, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

struct Pipe {
  Fd read, write;
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw ClawbotError(ErrorKind::internal, std::string("pipe: ") + std::strerror(errno));
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

struct FileActions {
  posix_spawn_file_actions_t actions;
  FileActions() { posix_spawn_file_actions_init(&actions); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
};

// The parent's environment with `env` set over it.
std::vector<std::string> child_environment(std::span<const EnvVar> env) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string::npos) vars[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& [name, value] : env) vars[name] = value;
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [name, value] : vars) out.push_back(name + "=" + value);
  return out;
}

// Starts argv[0] (looked up in PATH) with the parent's environment and `env` over it.
pid_t spawn(std::span<const std::string> argv, std::span<const EnvVar> env,
            const posix_spawn_file_actions_t* actions) {
  std::vector<std::string> argv_text(argv.begin(), argv.end());
  std::vector<char*> argv_ptrs;
  for (auto& a : argv_text) argv_ptrs.push_back(a.data());
  argv_ptrs.push_back(nullptr);
  std::vector<std::string> env_text = child_environment(env);
  std::vector<char*> env_ptrs;
  for (auto& e : env_text) env_ptrs.push_back(e.data());
  env_ptrs.push_back(nullptr);

  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argv_ptrs[0], actions, nullptr, argv_ptrs.data(), env_ptrs.data());
  if (rc != 0) {
    throw ClawbotError(
        ErrorKind::unavailable,
        argv.front() + ": " +
            (rc == ENOENT ? std::string("not installed (not found in PATH)") : std::strerror(rc)));
  }
  return pid;
}

// The exit status; 128 + the signal when a signal ended it.
int wait_status(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

ChildResult run_child(std::span<const std::string> argv, std::span<const EnvVar> env,
                      std::size_t max_capture) {
  if (argv.empty()) throw ClawbotError(ErrorKind::internal, "run_child: no program");
  Pipe out = make_pipe(), err = make_pipe();
  FileActions files;
  posix_spawn_file_actions_addopen(&files.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&files.actions, out.write.fd, 1);
  posix_spawn_file_actions_adddup2(&files.actions, err.write.fd, 2);

  const pid_t pid = spawn(argv, env, &files.actions);
  out.write.reset();
  err.write.reset();

  ChildResult result;
  std::array<pollfd, 2> fds{pollfd{out.read.fd, POLLIN, 0}, pollfd{err.read.fd, POLLIN, 0}};
  std::array<std::string*, 2> sinks{&result.out, &result.err};
  int open_count = 2;
  char buffer[65536];
  while (open_count > 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        const std::size_t room = max_capture - std::min(max_capture, sinks[i]->size());
        sinks[i]->append(buffer, std::min(room, static_cast<std::size_t>(n)));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  result.status = wait_status(pid);
  return result;
}

int run_child_inheriting(std::span<const std::string> argv, std::span<const EnvVar> env) {
  if (argv.empty()) throw ClawbotError(ErrorKind::internal, "run_child: no program");
  return wait_status(spawn(argv, env, nullptr));
}

std::string last_lines(std::string_view text, std::size_t lines) {
  std::vector<std::string_view> kept;
  while (!text.empty()) {
    const auto end = text.find_last_not_of("\r\n ");
    if (end == std::string_view::npos) break;
    text = text.substr(0, end + 1);
    const auto start = text.find_last_of('\n');
    const std::string_view line = start == std::string_view::npos ? text : text.substr(start + 1);
    kept.push_back(line);
    if (kept.size() == lines || start == std::string_view::npos) break;
    text = text.substr(0, start);
  }
  std::string joined;
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
    if (!joined.empty()) joined += '\n';
    joined += *it;
  }
  return joined;
}

}  // namespace clawbot::backup
