#ifndef TALLY_AGENT_CHECK_EXEC_CHECK_H_
#define TALLY_AGENT_CHECK_EXEC_CHECK_H_

#include <string>

#include "absl/time/time.h"
#include "agent/check/check.h"

namespace tally::agent {

// Runs a command without a shell (posix_spawnp, its own process group, stdin from /dev/null,
// stderr inherited) and reads the first 64 KiB of its stdout. On timeout the whole process
// group is killed with SIGKILL and reaped. The state follows tally.agent.v1.ExecCheck's rules;
// a command killed by a signal has no exit code and only `otherwise` can apply.
class ExecCheck : public Check {
 public:
  ExecCheck(v1::ExecCheck config, absl::Duration timeout);

  absl::StatusOr<std::string> Run() override;
  std::string Describe() const override;

 private:
  // Constant after construction.
  const v1::ExecCheck config_;
  const absl::Duration timeout_;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_CHECK_EXEC_CHECK_H_
