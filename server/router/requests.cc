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

absl::Status CheckString(absl::string_view field, const std::string& value, size_t limit,
                         bool required) {
  if (required && value.empty()) return Bad(field, "must not be empty");
  if (value.size() > limit) {
    return Bad(field, absl::StrCat(value.size(), " bytes, the limit is ", limit));
  }
  if (value.find('\0') != std::string::npos) return Bad(field, "must not contain NUL");
  return absl::OkStatus();
}

absl::Status CheckAttributes(const google::protobuf::Map<std::string, std::string>& attributes) {
  if (attributes.size() > processor::kMaxAttributes) {
    return Bad("attributes", absl::StrCat(attributes.size(), " entries, the limit is ",
                                          processor::kMaxAttributes));
  }
  for (const auto& [key, value] : attributes) {
    if (absl::Status s = CheckString("attributes key", key, processor::kMaxAttributeKeyBytes, true);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckString(absl::StrCat("attributes[\"", key, "\"]"), value,
                                     processor::kMaxAttributeValueBytes, false);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckObjectKey(const std::string& object_key) {
  return CheckString("object_key", object_key, processor::kMaxObjectKeyBytes, true);
}

absl::StatusOr<records::v1::ReportRecord> ReportRecordFor(const v1::ReportStateRequest& request,
                                                          const config::v1::Scenario& scenario,
                                                          int64_t now_ms) {
  if (absl::Status s = CheckObjectKey(request.object_key()); !s.ok()) return s;
  if (absl::Status s =
          CheckString("agent_id", request.agent_id(), processor::kMaxAgentIdBytes, true);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckString("state", request.state(), processor::kMaxStateBytes, true);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckAttributes(request.attributes()); !s.ok()) return s;

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
  return record;
}

absl::StatusOr<records::v1::ReportRecord> SetRecordFor(const v1::SetStateRequest& request,
                                                       int64_t now_ms) {
  if (absl::Status s = CheckObjectKey(request.object_key()); !s.ok()) return s;
  // Without a pin an empty state is allowed: it clears the operator's value and lets the votes
  // decide again. A pinned state must say what to pin.
  if (absl::Status s =
          CheckString("state", request.state(), processor::kMaxStateBytes, request.pin());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckString("reason", request.reason(), processor::kMaxReasonBytes, false);
      !s.ok()) {
    return s;
  }
  records::v1::ReportRecord record;
  record.set_kind(records::v1::REPORT_KIND_SET);
  record.set_scenario(request.scenario());
  record.set_object_key(request.object_key());
  record.set_state(request.state());
  record.set_pin(request.pin());
  record.set_reason(request.reason());
  record.set_observed_at_ms(now_ms);
  return record;
}

absl::StatusOr<records::v1::ReportRecord> PurgeRecordFor(const v1::PurgeStateRequest& request,
                                                         int64_t now_ms) {
  if (absl::Status s = CheckObjectKey(request.object_key()); !s.ok()) return s;
  if (absl::Status s = CheckString("reason", request.reason(), processor::kMaxReasonBytes, false);
      !s.ok()) {
    return s;
  }
  records::v1::ReportRecord record;
  record.set_kind(records::v1::REPORT_KIND_PURGE);
  record.set_scenario(request.scenario());
  record.set_object_key(request.object_key());
  record.set_reason(request.reason());
  record.set_observed_at_ms(now_ms);
  return record;
}

}  // namespace tally::router
