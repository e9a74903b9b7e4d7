#include "server/config/config.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/proto_file.h"
#include "server/processor/reducer.h"

namespace tally::config {
namespace {

// Topic-name safe and readable: lower-case letters, digits, '-', '_' and '.'.
bool IsName(const std::string& s, bool allow_dot) {
  if (s.empty() || s.size() > 100) return false;
  for (char c : s) {
    bool ok = absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' ||
              (allow_dot && c == '.');
    if (!ok) return false;
  }
  return true;
}

absl::Status Invalid(const std::string& field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

}  // namespace

absl::StatusOr<v1::Config> ParseConfig(const std::string& text, const std::string& origin) {
  v1::Config config;
  if (absl::Status s = common::ParseTextOrJson(text, origin, &config); !s.ok()) return s;
  return config;
}

absl::StatusOr<v1::Config> LoadConfigFile(const std::string& path) {
  v1::Config config;
  if (absl::Status s = common::LoadTextOrJsonFile(path, &config); !s.ok()) return s;
  return config;
}

void ApplyDefaults(v1::Config& config) {
  if (config.kafka().replication_factor() == 0) config.mutable_kafka()->set_replication_factor(1);
  for (auto& scenario : *config.mutable_scenarios()) {
    if (!scenario.has_default_ttl()) scenario.mutable_default_ttl()->set_seconds(60);
  }
  if (!config.node().has_expiry_interval()) {
    config.mutable_node()->mutable_expiry_interval()->set_seconds(1);
  }
  if (config.node().shard_map_size_mib() == 0) config.mutable_node()->set_shard_map_size_mib(1024);
  if (!config.node().has_session_timeout()) {
    config.mutable_node()->mutable_session_timeout()->set_seconds(10);
  }
  if (!config.node().has_transaction_timeout()) {
    config.mutable_node()->mutable_transaction_timeout()->set_seconds(10);
  }
  if (config.node().max_batch_records() == 0) config.mutable_node()->set_max_batch_records(5000);
  if (!config.node().has_heartbeat_interval()) {
    config.mutable_node()->mutable_heartbeat_interval()->set_seconds(1);
  }
  if (config.router().watch_max_queued() == 0) config.mutable_router()->set_watch_max_queued(10000);
  if (config.router().node_calls_in_flight() == 0) {
    config.mutable_router()->set_node_calls_in_flight(4);
  }
  if (config.router().node_batch_max() == 0) config.mutable_router()->set_node_batch_max(64);
  if (config.router().max_request_bytes() == 0) {
    config.mutable_router()->set_max_request_bytes(1 << 20);
  }
  if (config.router().report_burst() == 0 && config.router().reports_per_second() > 0) {
    config.mutable_router()->set_report_burst(
        std::max(1, static_cast<int>(std::ceil(config.router().reports_per_second()))));
  }
  if (!config.router().has_default_deadline()) {
    config.mutable_router()->mutable_default_deadline()->set_seconds(10);
  }
  if (!config.router().has_watch_progress_interval()) {
    config.mutable_router()->mutable_watch_progress_interval()->set_seconds(10);
  }
}

absl::Status ValidateConfig(const v1::Config& config) {
  if (!IsName(config.app_id(), /*allow_dot=*/true)) {
    return Invalid("app_id",
                   absl::StrCat("must be 1-100 of [a-z0-9._-], got \"", config.app_id(), "\""));
  }
  if (config.kafka().bootstrap_servers().empty()) {
    return Invalid("kafka.bootstrap_servers", "must not be empty");
  }
  if (config.kafka().replication_factor() < 1) {
    return Invalid("kafka.replication_factor",
                   absl::StrCat("must be >= 1, got ", config.kafka().replication_factor()));
  }
  if (config.scenarios().empty()) return Invalid("scenarios", "at least one scenario is needed");
  absl::flat_hash_set<std::string> names;
  for (int i = 0; i < config.scenarios_size(); ++i) {
    const v1::Scenario& s = config.scenarios(i);
    std::string field = absl::StrCat("scenarios[", i, "]");
    if (!IsName(s.name(), /*allow_dot=*/false)) {
      return Invalid(absl::StrCat(field, ".name"),
                     absl::StrCat("must be 1-100 of [a-z0-9_-], got \"", s.name(), "\""));
    }
    if (!names.insert(s.name()).second) {
      return Invalid(absl::StrCat(field, ".name"),
                     absl::StrCat("\"", s.name(), "\" appears twice"));
    }
    if (s.partitions() < 1 || s.partitions() > 10000) {
      return Invalid(absl::StrCat(field, ".partitions"),
                     absl::StrCat("must be in [1, 10000], got ", s.partitions()));
    }
    if (s.default_ttl().seconds() < 0 || s.default_ttl().nanos() < 0 ||
        (s.default_ttl().seconds() == 0 && s.default_ttl().nanos() < 1000000)) {
      return Invalid(absl::StrCat(field, ".default_ttl"), "must be at least 1ms");
    }
    if (s.standby_replicas() < 0) {
      return Invalid(absl::StrCat(field, ".standby_replicas"),
                     absl::StrCat("must be >= 0, got ", s.standby_replicas()));
    }
    auto reducer = processor::NewReducer(s.reducer());
    if (!reducer.ok()) {
      return Invalid(field, reducer.status().message());
    }
  }
  if (config.node().enabled()) {
    if (config.node().data_dir().empty()) return Invalid("node.data_dir", "must not be empty");
    if (!IsName(config.node().node_id(), /*allow_dot=*/true)) {
      return Invalid("node.node_id", absl::StrCat("must be 1-100 of [a-z0-9._-], got \"",
                                                  config.node().node_id(), "\""));
    }
  }
  if (config.node().shard_map_size_mib() < 1) {
    return Invalid("node.shard_map_size_mib", "must be >= 1");
  }
  if (config.node().max_batch_records() < 1) {
    return Invalid("node.max_batch_records", "must be >= 1");
  }
  auto millis = DurationMs;
  if (millis(config.node().session_timeout()) < 1000) {
    return Invalid("node.session_timeout", "must be at least 1s");
  }
  if (millis(config.node().transaction_timeout()) < 1000) {
    return Invalid("node.transaction_timeout", "must be at least 1s");
  }
  if (millis(config.node().expiry_interval()) < 10) {
    return Invalid("node.expiry_interval", "must be at least 10ms");
  }
  if (millis(config.node().heartbeat_interval()) < 10) {
    return Invalid("node.heartbeat_interval", "must be at least 10ms");
  }
  if (const int nice = config.node().processor_nice(); nice < -20 || nice > 19) {
    return Invalid("node.processor_nice", absl::StrCat("must be between -20 and 19, got ", nice));
  }
  if (millis(config.router().default_deadline()) < 1) {
    return Invalid("router.default_deadline", "must be at least 1ms");
  }
  if (config.router().reports_per_second() < 0) {
    return Invalid("router.reports_per_second", "must be >= 0 (0: unlimited)");
  }
  if (config.router().report_burst() < 0) return Invalid("router.report_burst", "must be >= 0");
  if (config.router().max_watches() < 0) {
    return Invalid("router.max_watches", "must be >= 0 (0: unlimited)");
  }
  if (config.router().max_request_bytes() < 1024) {
    return Invalid("router.max_request_bytes", "must be at least 1024");
  }
  if (config.router().watch_max_queued() < 1) {
    return Invalid("router.watch_max_queued", "must be >= 1");
  }
  if (millis(config.router().watch_progress_interval()) < 1000) {
    return Invalid("router.watch_progress_interval", "must be at least 1s");
  }
  if (config.router().node_calls_in_flight() < 1) {
    return Invalid("router.node_calls_in_flight",
                   absl::StrCat("must be >= 1, got ", config.router().node_calls_in_flight()));
  }
  // The ShardService's limit (node::kMaxGetBatch), which this library does not depend on.
  if (config.router().node_batch_max() < 1 || config.router().node_batch_max() > 1000) {
    return Invalid("router.node_batch_max",
                   absl::StrCat("must be in [1, 1000], got ", config.router().node_batch_max()));
  }
  if (!config.node().enabled() && !config.router().enabled()) {
    return Invalid("node.enabled",
                   "neither node.enabled nor router.enabled is set: nothing to run");
  }
  const auto& tls = config.server().tls();
  if (tls.cert_file().empty() != tls.key_file().empty()) {
    return Invalid(tls.cert_file().empty() ? "server.tls.cert_file" : "server.tls.key_file",
                   "cert_file and key_file go together");
  }
  if (tls.require_client_cert() && (tls.cert_file().empty() || tls.ca_file().empty())) {
    return Invalid("server.tls.require_client_cert",
                   "needs cert_file, key_file and ca_file (the CA that signs client certificates)");
  }
  if (config.server().listen_address().empty()) {
    return Invalid("server.listen_address", "must not be empty");
  }
  return absl::OkStatus();
}

std::string ReportsTopic(const v1::Config& config, const std::string& scenario) {
  return absl::StrCat(config.app_id(), ".", scenario, ".reports");
}
std::string ChangelogTopic(const v1::Config& config, const std::string& scenario) {
  return absl::StrCat(config.app_id(), ".", scenario, ".changelog");
}
std::string ChangesTopic(const v1::Config& config, const std::string& scenario) {
  return absl::StrCat(config.app_id(), ".", scenario, ".changes");
}
std::string DeadLetterTopic(const v1::Config& config, const std::string& scenario) {
  return absl::StrCat(config.app_id(), ".", scenario, ".dlq");
}

std::string MembersTopic(const v1::Config& config) {
  return absl::StrCat(config.app_id(), ".members");
}

absl::flat_hash_map<std::string, std::string> KafkaProperties(const v1::Config& config) {
  absl::flat_hash_map<std::string, std::string> props(config.kafka().properties().begin(),
                                                      config.kafka().properties().end());
  props["bootstrap.servers"] = config.kafka().bootstrap_servers();
  return props;
}

int64_t DurationMs(const google::protobuf::Duration& duration) {
  return duration.seconds() * 1000 + duration.nanos() / 1000000;
}

}  // namespace tally::config
