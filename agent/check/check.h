#ifndef TALLY_AGENT_CHECK_CHECK_H_
#define TALLY_AGENT_CHECK_CHECK_H_

// Checks: how the agent finds out the state of an object. A Check runs a command, fetches a URL
// or reads a file and maps the result to a state string (see tally.agent.v1.Check for the rules).

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tally/agent/v1/agent.pb.h"

namespace tally::agent {

class Check {
 public:
  virtual ~Check() = default;

  // Runs the check once, within its timeout. Returns the observed state (non-empty), or
  // DEADLINE_EXCEEDED if it ran out of time, UNAVAILABLE if it could not observe (the command
  // could not start, the connection failed, the file is missing), NOT_FOUND if nothing mapped
  // the result to a state. Blocks the calling thread; may be called from one thread at a time.
  virtual absl::StatusOr<std::string> Run() = 0;

  // What the check does, for logs ("exec /bin/true", "http http://...", "file /run/x").
  virtual std::string Describe() const = 0;
};

// Makes the check `config` describes. INVALID_ARGUMENT, naming the field, if it cannot work
// (no kind, empty command, a URL that is not http://, no rule that yields a state).
absl::StatusOr<std::unique_ptr<Check>> NewCheck(const v1::Check& config);

// The check's timeout (Check.timeout, default 5 s).
absl::Duration CheckTimeout(const v1::Check& config);

// The first line of `text` (up to the first '\n'), ASCII whitespace trimmed.
std::string FirstLine(std::string_view text);

}  // namespace tally::agent

#endif  // TALLY_AGENT_CHECK_CHECK_H_
