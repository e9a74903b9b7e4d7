#include "agent/check/exec_check.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

extern char** environ;

namespace tally::agent {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;

int MillisUntil(absl::Time deadline) {
  int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
}

// Kills the command's whole process group (it may have started children) and reaps it.
void KillAndReap(pid_t pid) {
  ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// Spawns the command with stdout on a pipe. Returns the pid and the pipe's read end.
absl::Status Spawn(const v1::ExecCheck& config, pid_t* pid, int* out_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::UnavailableError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so a timeout kills whatever it started too; and the signal state of
  // a fresh process, not the agent's (which blocks SIGTERM in every thread and ignores SIGPIPE).
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv;
  for (const std::string& arg : config.command()) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  int rc = ::posix_spawnp(pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot run ", config.command(0), ": ", std::strerror(rc)));
  }
  *out_fd = fds[0];
  return absl::OkStatus();
}

}  // namespace

ExecCheck::ExecCheck(v1::ExecCheck config, absl::Duration timeout)
    : config_(std::move(config)), timeout_(timeout) {}

std::string ExecCheck::Describe() const {
  return absl::StrCat("exec ", absl::StrJoin(config_.command(), " "));
}

absl::StatusOr<std::string> ExecCheck::Run() {
  const absl::Time deadline = absl::Now() + timeout_;
  pid_t pid = 0;
  int out_fd = -1;
  if (absl::Status s = Spawn(config_, &pid, &out_fd); !s.ok()) return s;

  // Read stdout to its end (past kMaxOutput too, so the command never blocks on a full pipe).
  std::string output;
  char buf[4096];
  for (;;) {
    if (absl::Now() >= deadline) {
      ::close(out_fd);
      KillAndReap(pid);
      return absl::DeadlineExceededError(
          absl::StrCat(Describe(), ": no exit within ", absl::FormatDuration(timeout_)));
    }
    pollfd p{out_fd, POLLIN, 0};
    int n = ::poll(&p, 1, MillisUntil(deadline));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    ssize_t got = ::read(out_fd, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: the command closed its stdout (normally: it exited)
    if (output.size() < kMaxOutput) {
      output.append(buf, std::min(static_cast<size_t>(got), kMaxOutput - output.size()));
    }
  }
  ::close(out_fd);

  // stdout is closed; the exit normally follows at once. No pidfd on every kernel we run on, so
  // poll for it with short, growing pauses, bounded by the same deadline.
  int status = 0;
  absl::Duration pause = absl::Microseconds(100);
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("waitpid: ", std::strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      KillAndReap(pid);
      return absl::DeadlineExceededError(
          absl::StrCat(Describe(), ": no exit within ", absl::FormatDuration(timeout_)));
    }
    absl::SleepFor(std::min(pause, deadline - absl::Now()));
    pause = std::min(pause * 2, absl::Milliseconds(10));
  }

  std::string result;
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    auto it = config_.exit_codes().find(code);
    if (it != config_.exit_codes().end()) return it->second;
    result = absl::StrCat("exit code ", code);
  } else {
    result = absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  if (config_.state_from_output()) {
    std::string line = FirstLine(output);
    if (!line.empty()) return line;
  }
  if (!config_.otherwise().empty()) return config_.otherwise();
  return absl::NotFoundError(absl::StrCat(Describe(), ": ", result,
                                          config_.state_from_output() ? " and no output" : "",
                                          " map to no state"));
}

}  // namespace tally::agent
