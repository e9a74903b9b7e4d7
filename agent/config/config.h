#ifndef TALLY_AGENT_CONFIG_CONFIG_H_
#define TALLY_AGENT_CONFIG_CONFIG_H_

// Loading and validating tally-agent's configuration (tally.agent.v1.AgentConfig).

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "tally/agent/v1/agent.pb.h"

namespace tally::agent {

// Parses `text` as JSON if it starts with '{' (after whitespace), else as textproto. Unknown
// fields are errors. INVALID_ARGUMENT with the parser's message, prefixed by `origin`.
absl::StatusOr<v1::AgentConfig> ParseAgentConfig(const std::string& text,
                                                 const std::string& origin);

// Reads and parses a file. NOT_FOUND if it cannot be read.
absl::StatusOr<v1::AgentConfig> LoadAgentConfigFile(const std::string& path);

// Fills in the defaults the proto documents, and copies interval and ttl into every watch that
// has none.
void ApplyDefaults(v1::AgentConfig& config);

// Checks a config with defaults applied; INVALID_ARGUMENT naming the field, e.g.
// `watches[2].check.http.url: "ftp://x" is not an http:// URL`. With `once` (--once: checks are
// run and printed, nothing is sent) routers and spool.dir may be empty.
absl::Status ValidateAgentConfig(const v1::AgentConfig& config, bool once);

absl::Duration ToDuration(const google::protobuf::Duration& d);
google::protobuf::Duration ToProto(absl::Duration d);

}  // namespace tally::agent

#endif  // TALLY_AGENT_CONFIG_CONFIG_H_
