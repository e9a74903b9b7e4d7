#ifndef TALLY_SERVER_PROCESSOR_RECORD_VALIDATION_H_
#define TALLY_SERVER_PROCESSOR_RECORD_VALIDATION_H_

// Size limits and validity rules for reports. The router refuses what breaks them before anything
// reaches Kafka; the processor checks again, because anyone with access to the topic can write to
// it, and sends what fails to the dead-letter topic.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/storage/shard.h"
#include "tally/records/v1/records.pb.h"

namespace tally::processor {

inline constexpr size_t kMaxObjectKeyBytes = 256;
inline constexpr size_t kMaxAgentIdBytes = 128;
// A vote's shard key holds both: a report within the limits can always be stored. (A larger
// object key would pass validation and then fail the shard's commit on every retry.)
static_assert(kMaxObjectKeyBytes + kMaxAgentIdBytes <= storage::kMaxObjectAndAgentIdSize);
inline constexpr size_t kMaxStateBytes = 256;
inline constexpr size_t kMaxAttributes = 32;
inline constexpr size_t kMaxAttributeKeyBytes = 128;
inline constexpr size_t kMaxAttributeValueBytes = 1024;
inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr int64_t kMaxTtlMs = int64_t{7} * 24 * 3600 * 1000;  // one week
// The latest observed_at_ms a record may carry: the end of 9999, the last time a
// google.protobuf.Timestamp (the public API's observed_at) can hold. Later values come from no
// router, and observed_at_ms + ttl_ms could overflow.
inline constexpr int64_t kMaxObservedAtMs = int64_t{253402300799} * 1000 + 999;

// OK if `record`, read from the reports topic of `scenario` with Kafka key `kafka_key`, can be
// processed; else INVALID_ARGUMENT whose message names the field and why, e.g.
// `object_key: 600 bytes, the limit is 256`.
absl::Status ValidateReportRecord(const records::v1::ReportRecord& record,
                                  const std::string& scenario, const std::string& kafka_key);

// OK if `value` has at most `limit` bytes and, if `required`, is not empty; else INVALID_ARGUMENT
// naming `field`: `state: 300 bytes, the limit is 256`, `agent_id: must not be empty`. The
// check behind ValidateReportRecord's strings, for the router's checks of requests to share.
absl::Status CheckSize(absl::string_view field, const std::string& value, size_t limit,
                       bool required);

}  // namespace tally::processor

#endif  // TALLY_SERVER_PROCESSOR_RECORD_VALIDATION_H_
