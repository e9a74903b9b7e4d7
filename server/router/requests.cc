#include "server/router/requests.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/processor/record_validation.h"

namespace tally::router {
namespace {

using google::protobuf::util::TimeUtil;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

bool HasNul(const std::string& value) { return value.find('\0') != std::string::npos; }

// The processor's own checks (sizes, required fields), so the two cannot drift apart, plus the
// router's stricter rule: no NUL in any string (the processor refuses it only in object_key).
absl::StatusOr<records::v1::ReportRecord> Checked(records::v1::ReportRecord record) {
  if (absl::Status s =
          processor::ValidateReportRecord(record, record.scenario(), record.object_key());
      !s.ok()) {
    return s;
  }
  constexpr absl::string_view kNul = "must not contain NUL";
  if (HasNul(record.agent_id())) return Bad("agent_id", kNul);
  if (HasNul(record.state())) return Bad("state", kNul);
  if (HasNul(record.reason())) return Bad("reason", kNul);
  for (const auto& [key, value] : record.attributes()) {
    if (HasNul(key)) return Bad("attributes key", kNul);
    if (HasNul(value)) return Bad(absl::StrCat("attributes[\"", key, "\"]"), kNul);
  }
  return record;
}

}  // namespace

absl::Status CheckObjectKey(const std::string& object_key) {
  if (absl::Status s =
          processor::CheckSize("object_key", object_key, processor::kMaxObjectKeyBytes, true);
      !s.ok()) {
    return s;
  }
  if (HasNul(object_key)) return Bad("object_key", "must not contain NUL");
  return absl::OkStatus();
}

absl::StatusOr<records::v1::ReportRecord> ReportRecordFor(const v1::ReportStateRequest& request,
                                                          const config::v1::Scenario& scenario,
                                                          int64_t now_ms) {
  // ttl and observed_at are checked here, as the request's fields: the record's ttl_ms and
  // observed_at_ms are derived from them.
  int64_t ttl_ms =
      scenario.default_ttl().seconds() * 1000 + scenario.default_ttl().nanos() / 1000000;
  if (request.has_ttl()) {
    if (request.ttl().seconds() < 0 || request.ttl().nanos() < 0 ||
        request.ttl().nanos() >= 1'000'000'000) {
      return Bad("ttl", "must be a positive duration");
    }
    if (request.ttl().seconds() > processor::kMaxTtlMs / 1000) {
      return Bad("ttl", absl::StrCat("must be between 1ms and 168h (one week), got ",
                                     request.ttl().seconds(), "s"));
    }
    ttl_ms = TimeUtil::DurationToMilliseconds(request.ttl());
    if (ttl_ms < 1 || ttl_ms > processor::kMaxTtlMs) {
      return Bad("ttl", absl::StrCat("must be between 1ms and 168h (one week), got ",
                                     TimeUtil::ToString(request.ttl())));
    }
  }
  int64_t observed_at_ms = now_ms;
  if (request.has_observed_at()) {
    if (request.observed_at().seconds() <= 0 || request.observed_at().nanos() < 0 ||
        request.observed_at().nanos() >= 1'000'000'000 ||
        request.observed_at().seconds() > TimeUtil::kTimestampMaxSeconds) {
      return Bad("observed_at", "must be a valid time after 1970");
    }
    observed_at_ms = TimeUtil::TimestampToMilliseconds(request.observed_at());
    if (observed_at_ms <= 0) return Bad("observed_at", "must be a valid time after 1970");
    if (observed_at_ms > now_ms + kMaxClockSkewMs) {
      return Bad("observed_at",
                 absl::StrCat(TimeUtil::ToString(request.observed_at()), " is more than ",
                              kMaxClockSkewMs / 1000, "s in the future (check the agent's clock)"));
    }
  }
  records::v1::ReportRecord record;
  record.set_kind(records::v1::REPORT_KIND_REPORT);
  record.set_scenario(request.scenario());
  record.set_object_key(request.object_key());
  record.set_agent_id(request.agent_id());
  record.set_state(request.state());
  *record.mutable_attributes() = request.attributes();
  record.set_observed_at_ms(observed_at_ms);
  record.set_ttl_ms(ttl_ms);
  return Checked(std::move(record));
}

absl::StatusOr<records::v1::ReportRecord> SetRecordFor(const v1::SetStateRequest& request,
                                                       int64_t now_ms) {
  // Without a pin an empty state is allowed: it clears the operator's value and lets the votes
  // decide again. A pinned state must say what to pin (the processor's rule).
  records::v1::ReportRecord record;
  record.set_kind(records::v1::REPORT_KIND_SET);
  record.set_scenario(request.scenario());
  record.set_object_key(request.object_key());
  record.set_state(request.state());
  record.set_pin(request.pin());
  record.set_reason(request.reason());
  record.set_observed_at_ms(now_ms);
  return Checked(std::move(record));
}

absl::StatusOr<records::v1::ReportRecord> PurgeRecordFor(const v1::PurgeStateRequest& request,
                                                         int64_t now_ms) {
  records::v1::ReportRecord record;
  record.set_kind(records::v1::REPORT_KIND_PURGE);
  record.set_scenario(request.scenario());
  record.set_object_key(request.object_key());
  record.set_reason(request.reason());
  record.set_observed_at_ms(now_ms);
  return Checked(std::move(record));
}

}  // namespace tally::router
