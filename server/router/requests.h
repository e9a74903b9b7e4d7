#ifndef TALLY_SERVER_ROUTER_REQUESTS_H_
#define TALLY_SERVER_ROUTER_REQUESTS_H_

// Turns the public write requests into records for the reports topic, checking them first. Errors
// are INVALID_ARGUMENT and name the request's field and why, e.g.
//   object_key: 600 bytes, the limit is 256
// The checks are the processor's own (processor::ValidateReportRecord, which runs again on the
// record when the processor reads it), plus one of the router's: no string may contain NUL.
// Nothing here talks to Kafka: a request that fails here never reaches it.

#include <cstdint>

#include "absl/status/statusor.h"
#include "tally/config/v1/config.pb.h"
#include "tally/records/v1/records.pb.h"
#include "tally/v1/state.pb.h"

namespace tally::router {

// Reports may be stamped at most this far in the future (clock skew between agent and router).
inline constexpr int64_t kMaxClockSkewMs = 60'000;

// `scenario` is the request's scenario; `now_ms` fills a missing observed_at.
absl::StatusOr<records::v1::ReportRecord> ReportRecordFor(const v1::ReportStateRequest& request,
                                                          const config::v1::Scenario& scenario,
                                                          int64_t now_ms);
absl::StatusOr<records::v1::ReportRecord> SetRecordFor(const v1::SetStateRequest& request,
                                                       int64_t now_ms);
absl::StatusOr<records::v1::ReportRecord> PurgeRecordFor(const v1::PurgeStateRequest& request,
                                                         int64_t now_ms);

// Checks an object key as every request does: non-empty, within the limit, no NUL.
absl::Status CheckObjectKey(const std::string& object_key);

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_REQUESTS_H_
