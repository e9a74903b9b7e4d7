#include "agent/config/config.h"

#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/check/check.h"
#include "server/common/proto_file.h"

namespace tally::agent {
namespace {

absl::Status Invalid(const std::string& field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

void SetIfUnset(google::protobuf::Duration* d, bool has, absl::Duration value) {
  if (!has) *d = ToProto(value);
}

// The server's limits on reports (README "Limits on reports"), checked here so a bad config
// fails at start rather than as refused reports. The router also refuses NUL in every string.
constexpr size_t kMaxAgentId = 128;
constexpr size_t kMaxObjectKey = 256;
constexpr size_t kMaxState = 256;
constexpr int kMaxAttributes = 32;

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

}  // namespace

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return out;
}

absl::StatusOr<v1::AgentConfig> ParseAgentConfig(const std::string& text,
                                                 const std::string& origin) {
  v1::AgentConfig config;
  if (absl::Status s = common::ParseTextOrJson(text, origin, &config); !s.ok()) return s;
  return config;
}

absl::StatusOr<v1::AgentConfig> LoadAgentConfigFile(const std::string& path) {
  v1::AgentConfig config;
  if (absl::Status s = common::LoadTextOrJsonFile(path, &config); !s.ok()) return s;
  return config;
}

void ApplyDefaults(v1::AgentConfig& config) {
  SetIfUnset(config.mutable_interval(), config.has_interval(), absl::Seconds(10));
  SetIfUnset(config.mutable_ttl(), config.has_ttl(), absl::Seconds(60));
  if (!config.has_jitter()) config.set_jitter(0.1);
  v1::Backoff& backoff = *config.mutable_backoff();
  SetIfUnset(backoff.mutable_initial(), backoff.has_initial(), absl::Milliseconds(200));
  SetIfUnset(backoff.mutable_max(), backoff.has_max(), absl::Seconds(30));
  if (!backoff.has_jitter()) backoff.set_jitter(0.2);
  SetIfUnset(config.mutable_rpc_timeout(), config.has_rpc_timeout(), absl::Seconds(5));
  if (config.max_batch() == 0) config.set_max_batch(100);
  if (config.spool().max_bytes() == 0) config.mutable_spool()->set_max_bytes(64 << 20);
  if (config.spool().segment_bytes() == 0) config.mutable_spool()->set_segment_bytes(1 << 20);
  for (v1::Watch& watch : *config.mutable_watches()) {
    if (!watch.has_interval()) *watch.mutable_interval() = config.interval();
    if (!watch.has_ttl()) *watch.mutable_ttl() = config.ttl();
  }
}

absl::Status ValidateAgentConfig(const v1::AgentConfig& config, bool once) {
  if (config.agent_id().empty() || config.agent_id().size() > kMaxAgentId ||
      HasNul(config.agent_id())) {
    return Invalid("agent_id",
                   absl::StrCat("must be 1-", kMaxAgentId, " bytes without NUL (or --agent_id)"));
  }
  if (!once && config.routers().empty()) {
    return Invalid("routers", "at least one router (host:port) is needed (or --routers)");
  }
  for (int i = 0; i < config.routers_size(); ++i) {
    if (config.routers(i).empty()) return Invalid(absl::StrCat("routers[", i, "]"), "is empty");
  }
  if (!once && config.spool().dir().empty()) {
    return Invalid("spool.dir", "must not be empty (or --spool_dir)");
  }
  if (config.spool().max_bytes() < 64 * 1024)
    return Invalid("spool.max_bytes", "must be >= 64 KiB");
  if (config.spool().segment_bytes() < 4096 ||
      config.spool().segment_bytes() > config.spool().max_bytes() / 4) {
    return Invalid("spool.segment_bytes", "must be in [4 KiB, max_bytes / 4]");
  }
  const v1::Tls& tls = config.tls();
  if (tls.ca_file().empty() && (!tls.cert_file().empty() || !tls.key_file().empty())) {
    return Invalid("tls.ca_file", "is required with tls.cert_file and tls.key_file");
  }
  if (tls.cert_file().empty() != tls.key_file().empty()) {
    return Invalid(tls.cert_file().empty() ? "tls.cert_file" : "tls.key_file",
                   "tls.cert_file and tls.key_file go together (mutual TLS)");
  }
  if (config.jitter() < 0 || config.jitter() > 0.5) return Invalid("jitter", "must be in [0, 0.5]");
  const v1::Backoff& backoff = config.backoff();
  if (ToDuration(backoff.initial()) <= absl::ZeroDuration()) {
    return Invalid("backoff.initial", "must be > 0");
  }
  if (ToDuration(backoff.max()) < ToDuration(backoff.initial())) {
    return Invalid("backoff.max", "must be >= backoff.initial");
  }
  if (backoff.jitter() < 0 || backoff.jitter() > 0.5) {
    return Invalid("backoff.jitter", "must be in [0, 0.5]");
  }
  if (ToDuration(config.rpc_timeout()) <= absl::ZeroDuration()) {
    return Invalid("rpc_timeout", "must be > 0");
  }
  if (config.max_batch() < 1 || config.max_batch() > 1000) {
    return Invalid("max_batch", "must be in [1, 1000]");
  }
  if (config.watches().empty()) return Invalid("watches", "at least one watch is needed");
  absl::flat_hash_set<std::string> objects;
  for (int i = 0; i < config.watches_size(); ++i) {
    const v1::Watch& w = config.watches(i);
    const std::string field = absl::StrCat("watches[", i, "]");
    if (w.scenario().empty()) return Invalid(field + ".scenario", "must not be empty");
    if (w.object_key().empty() || w.object_key().size() > kMaxObjectKey || HasNul(w.object_key())) {
      return Invalid(field + ".object_key",
                     absl::StrCat("must be 1-", kMaxObjectKey, " bytes without NUL"));
    }
    if (!objects.insert(absl::StrCat(w.scenario(), "/", w.object_key())).second) {
      return Invalid(field, absl::StrCat("watches ", w.scenario(), "/", w.object_key(),
                                         " again: one agent casts one vote per object"));
    }
    if (ToDuration(w.interval()) < absl::Milliseconds(10)) {
      return Invalid(field + ".interval", "must be at least 10ms");
    }
    const absl::Duration ttl = ToDuration(w.ttl());
    if (ttl < absl::Milliseconds(20) || ttl > absl::Hours(24 * 7)) {
      return Invalid(field + ".ttl", "must be in [20ms, 7d]");
    }
    if (w.error_state().size() > kMaxState || HasNul(w.error_state())) {
      return Invalid(field + ".error_state",
                     absl::StrCat("must be at most ", kMaxState, " bytes without NUL"));
    }
    if (w.attributes_size() > kMaxAttributes) {
      return Invalid(field + ".attributes", absl::StrCat("at most ", kMaxAttributes, " allowed"));
    }
    for (const auto& [key, value] : w.attributes()) {
      if (key.empty() || key.size() > 128 || value.size() > 1024 || HasNul(key) || HasNul(value)) {
        return Invalid(field + ".attributes",
                       absl::StrCat("\"", absl::CEscape(key),
                                    "\": keys 1-128 bytes, values up to 1024, no NUL"));
      }
    }
    absl::StatusOr<std::unique_ptr<Check>> check = NewCheck(w.check());
    // NewCheck names its fields from "check.".
    if (!check.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".", check.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace tally::agent
