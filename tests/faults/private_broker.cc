#include "tests/faults/private_broker.h"

#include <stdio.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tally::test {

PrivateBroker::~PrivateBroker() { (void)Stop(); }

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
