#include "agent/check/file_check.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace tally::agent {

FileCheck::FileCheck(v1::FileCheck config) : config_(std::move(config)) {}

std::string FileCheck::Describe() const { return absl::StrCat("file ", config_.path()); }

absl::StatusOr<std::string> FileCheck::Run() {
  std::ifstream in(config_.path(), std::ios::binary);
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("cannot read ", config_.path(), ": ", std::strerror(errno)));
  }
  std::string text(64 * 1024, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  std::string state = FirstLine(text);
  if (state.empty()) {
    return absl::NotFoundError(absl::StrCat(config_.path(), ": first line is empty"));
  }
  return state;
}

}  // namespace tally::agent
