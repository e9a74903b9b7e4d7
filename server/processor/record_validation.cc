#include "server/processor/record_validation.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace tally::processor {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

}  // namespace

absl::Status CheckSize(absl::string_view field, const std::string& value, size_t limit,
                       bool required) {
  if (required && value.empty()) return Bad(field, "must not be empty");
  if (value.size() > limit) {
    return Bad(field, absl::StrCat(value.size(), " bytes, the limit is ", limit));
  }
  return absl::OkStatus();
}

static_assert(kMaxObservedAtMs ==
              google::protobuf::util::TimeUtil::kTimestampMaxSeconds * 1000 + 999);
static_assert(kMaxObservedAtMs <= std::numeric_limits<int64_t>::max() - kMaxTtlMs);

absl::Status ValidateReportRecord(const records::v1::ReportRecord& record,
                                  const std::string& scenario, const std::string& kafka_key) {
  using records::v1::ReportKind;
  if (record.scenario() != scenario) {
    return Bad("scenario", absl::StrCat("\"", record.scenario(),
                                        "\" is not the scenario of this topic (\"", scenario,
                                        "\")"));
  }
  if (absl::Status s = CheckSize("object_key", record.object_key(), kMaxObjectKeyBytes, true);
      !s.ok()) {
    return s;
  }
  // Shard keys use '\0' as the separator between object key and agent id.
  if (record.object_key().find('\0') != std::string::npos) {
    return Bad("object_key", "must not contain NUL");
  }
  if (record.object_key() != kafka_key) {
    return Bad("object_key", "differs from the record's Kafka key");
  }
  switch (record.kind()) {
    case ReportKind::REPORT_KIND_REPORT:
      if (absl::Status s = CheckSize("agent_id", record.agent_id(), kMaxAgentIdBytes, true);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = CheckSize("state", record.state(), kMaxStateBytes, true); !s.ok()) {
        return s;
      }
      if (record.ttl_ms() <= 0 || record.ttl_ms() > kMaxTtlMs) {
        return Bad("ttl_ms", absl::StrCat("must be in [1, ", kMaxTtlMs, "], got ",
                                          record.ttl_ms()));
      }
      if (record.observed_at_ms() <= 0) {
        return Bad("observed_at_ms", absl::StrCat("must be > 0, got ", record.observed_at_ms()));
      }
      if (record.observed_at_ms() > kMaxObservedAtMs) {
        return Bad("observed_at_ms", absl::StrCat("must be at most ", kMaxObservedAtMs,
                                                  " (the end of year 9999), got ",
                                                  record.observed_at_ms()));
      }
      break;
    case ReportKind::REPORT_KIND_SET:
      if (absl::Status s = CheckSize("state", record.state(), kMaxStateBytes, record.pin());
          !s.ok()) {
        return s;
      }
      break;
    case ReportKind::REPORT_KIND_PURGE:
      break;
    default:
      return Bad("kind", absl::StrCat("unknown report kind ", record.kind()));
  }
  if (record.attributes_size() > static_cast<int>(kMaxAttributes)) {
    return Bad("attributes", absl::StrCat(record.attributes_size(), " entries, the limit is ",
                                          kMaxAttributes));
  }
  for (const auto& [key, value] : record.attributes()) {
    if (absl::Status s = CheckSize("attributes key", key, kMaxAttributeKeyBytes, true); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckSize(absl::StrCat("attributes[\"", key, "\"]"), value,
                                   kMaxAttributeValueBytes, false);
        !s.ok()) {
      return s;
    }
  }
  return CheckSize("reason", record.reason(), kMaxReasonBytes, false);
}

}  // namespace tally::processor
