#include "tests/faults/private_broker.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tally::test {

PrivateBroker::PrivateBroker() {
  // The watchdog waits for SIGTERM, which the kernel sends it when the test's thread that
  // created it exits (PR_SET_PDEATHSIG); the signal is blocked first, so it stays pending until
  // sigwait takes it. Then it stops the broker and removes the directory. Everything it needs is
  // made before the fork: after it, only async-signal-safe calls.
  // (Its output goes nowhere: the test's pipes must close when the test dies.)
  const std::string script = absl::StrCat("exec >/dev/null 2>&1; ", KAFKA_SH, " stop --dir '",
                                          dir_.path(), "/kafka'; rm -rf '", dir_.path(), "'");
  const pid_t parent = getpid();
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  watchdog_ = fork();
  if (watchdog_ == 0) {
    sigprocmask(SIG_BLOCK, &term, nullptr);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == parent) {
      int received = 0;
      sigwait(&term, &received);
    }
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
}

PrivateBroker::~PrivateBroker() {
  (void)Stop();
  if (watchdog_ > 0) {
    kill(watchdog_, SIGKILL);
    waitpid(watchdog_, nullptr, 0);
  }
}

absl::StatusOr<std::string> PrivateBroker::Run(const std::string& command) {
  const std::string line =
      absl::StrCat(KAFKA_SH, " ", command, " --dir ", dir_.path(), "/kafka 2>&1");
  FILE* pipe = popen(line.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(absl::StrCat("cannot run ", line));
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  const int status = pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(line, " failed:\n", out));
  }
  return out;
}

absl::StatusOr<std::string> PrivateBroker::Start() {
  auto out = Run("start");
  if (!out.ok()) return out.status();
  // The bootstrap address is the last line (fetch.sh may print before it).
  std::string text(absl::StripTrailingAsciiWhitespace(*out));
  return text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
}

absl::Status PrivateBroker::Stop() { return Run("stop").status(); }

std::string PrivateBroker::LogTail() const {
  std::ifstream in(absl::StrCat(dir_.path(), "/kafka/broker.log"));
  std::stringstream s;
  s << in.rdbuf();
  std::string log = s.str();
  return log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
}

}  // namespace tally::test
