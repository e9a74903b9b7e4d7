#ifndef TALLY_SERVER_ROUTER_TOKENS_H_
#define TALLY_SERVER_ROUTER_TOKENS_H_

// The opaque tokens of the public API. Clients must treat them as opaque strings; the formats
// are versioned so they can change.
//   write token: names one record of a scenario's reports topic, (partition, offset), returned by
//                ReportState/SetState/PurgeState and accepted by GetState.min_token;
//   page token:  ListState's position, the last key a page covered.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tally::router {

struct WriteToken {
  int32_t partition = 0;
  int64_t offset = 0;
};

std::string EncodeWriteToken(const WriteToken& token);
// INVALID_ARGUMENT naming `field` if `text` is not a write token.
absl::StatusOr<WriteToken> ParseWriteToken(const std::string& text, const std::string& field);

std::string EncodePageToken(const std::string& last_key);
// The last key of the previous page; INVALID_ARGUMENT naming page_token if `text` is not a page
// token.
absl::StatusOr<std::string> ParsePageToken(const std::string& text);

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_TOKENS_H_
