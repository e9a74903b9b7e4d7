#ifndef TALLY_CLIENT_TALLYCTL_COMMANDS_H_
#define TALLY_CLIENT_TALLYCTL_COMMANDS_H_

// tallyctl's subcommands over a tally::Client: each prints its result to `out` (table or JSON as
// the invocation says) and errors to `err`, and returns the process exit code.

#include <ostream>

#include "absl/status/status.h"
#include "client/client.h"
#include "client/tallyctl/command_line.h"

namespace tally::tallyctl {

// The exit code for a call's status (see kExit* in command_line.h): OK 0, NOT_FOUND 1,
// INVALID_ARGUMENT 2, UNAVAILABLE and DEADLINE_EXCEEDED 3, anything else 4.
int ExitCodeFor(const absl::Status& status);

// Runs `invocation` (a parsed command, not help) against `client`.
int RunCommand(const Invocation& invocation, const Client& client, std::ostream& out,
               std::ostream& err);

}  // namespace tally::tallyctl

#endif  // TALLY_CLIENT_TALLYCTL_COMMANDS_H_
