#ifndef TALLY_SERVER_CONFIG_CONFIG_H_
#define TALLY_SERVER_CONFIG_CONFIG_H_

// Loading and validating tallyd's configuration (tally.config.v1.Config).

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tally/config/v1/config.pb.h"

namespace tally::config {

// Parses `text` as JSON if it starts with '{' (after whitespace), else as textproto. Unknown
// fields are errors. INVALID_ARGUMENT with the parser's position on failure; `origin` (a file name)
// prefixes the message.
absl::StatusOr<v1::Config> ParseConfig(const std::string& text, const std::string& origin);

// Reads and parses a file. NOT_FOUND if it cannot be read.
absl::StatusOr<v1::Config> LoadConfigFile(const std::string& path);

// Fills in defaults (default_ttl 60 s, replication factor 1, expiry interval 1 s, map size).
void ApplyDefaults(v1::Config& config);

// Checks a config with defaults applied; INVALID_ARGUMENT naming the field, e.g.
// `scenarios[1].partitions: must be > 0, got 0`.
absl::Status ValidateConfig(const v1::Config& config);

// Topic names of a scenario.
std::string ReportsTopic(const v1::Config& config, const std::string& scenario);
std::string ChangelogTopic(const v1::Config& config, const std::string& scenario);
std::string ChangesTopic(const v1::Config& config, const std::string& scenario);
std::string DeadLetterTopic(const v1::Config& config, const std::string& scenario);
// <app_id>.members: compacted, one partition; every node's membership record, keyed by node id.
std::string MembersTopic(const v1::Config& config);

// librdkafka properties of every client: kafka.properties plus bootstrap.servers.
absl::flat_hash_map<std::string, std::string> KafkaProperties(const v1::Config& config);

// A protobuf Duration in milliseconds.
int64_t DurationMs(const google::protobuf::Duration& duration);

}  // namespace tally::config

#endif  // TALLY_SERVER_CONFIG_CONFIG_H_
