#ifndef TALLY_AGENT_CHECK_FILE_CHECK_H_
#define TALLY_AGENT_CHECK_FILE_CHECK_H_

#include <string>

#include "agent/check/check.h"

namespace tally::agent {

// Reads the first line of a file (at most 64 KiB of it); the state is that line, whitespace
// trimmed. UNAVAILABLE if the file cannot be read, NOT_FOUND if the line is empty.
class FileCheck : public Check {
 public:
  explicit FileCheck(v1::FileCheck config);

  absl::StatusOr<std::string> Run() override;
  std::string Describe() const override;

 private:
  // Constant after construction.
  const v1::FileCheck config_;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_CHECK_FILE_CHECK_H_
