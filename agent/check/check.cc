#include "agent/check/check.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/check/exec_check.h"
#include "agent/check/file_check.h"
#include "agent/check/http_check.h"

namespace tally::agent {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("check.", field, ": ", why));
}

}  // namespace

absl::Duration CheckTimeout(const v1::Check& config) {
  if (!config.has_timeout()) return absl::Seconds(5);
  return absl::Seconds(config.timeout().seconds()) + absl::Nanoseconds(config.timeout().nanos());
}

std::string FirstLine(std::string_view text) {
  std::string_view line = text.substr(0, text.find('\n'));
  absl::string_view trimmed =
      absl::StripAsciiWhitespace(absl::string_view(line.data(), line.size()));
  return std::string(trimmed);
}

absl::StatusOr<std::unique_ptr<Check>> NewCheck(const v1::Check& config) {
  const absl::Duration timeout = CheckTimeout(config);
  if (timeout <= absl::ZeroDuration()) return Invalid("timeout", "must be > 0");
  switch (config.kind_case()) {
    case v1::Check::kExec: {
      const v1::ExecCheck& exec = config.exec();
      if (exec.command().empty() || exec.command(0).empty()) {
        return Invalid("exec.command", "must name a program");
      }
      if (exec.exit_codes().empty() && !exec.state_from_output() && exec.otherwise().empty()) {
        return Invalid("exec", "needs exit_codes, state_from_output or otherwise to yield a state");
      }
      return std::make_unique<ExecCheck>(exec, timeout);
    }
    case v1::Check::kHttp: {
      absl::StatusOr<HttpUrl> url = ParseHttpUrl(config.http().url());
      if (!url.ok()) return Invalid("http.url", url.status().message());
      if (config.http().status_codes().empty() && config.http().otherwise().empty()) {
        return Invalid("http", "needs status_codes or otherwise to yield a state");
      }
      return std::make_unique<HttpCheck>(config.http(), *std::move(url), timeout);
    }
    case v1::Check::kFile:
      if (config.file().path().empty()) return Invalid("file.path", "must not be empty");
      return std::make_unique<FileCheck>(config.file());
    case v1::Check::KIND_NOT_SET:
      break;
  }
  return Invalid("kind", "one of exec, http or file is required");
}

}  // namespace tally::agent
