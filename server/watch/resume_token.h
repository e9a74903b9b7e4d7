#ifndef TALLY_SERVER_WATCH_RESUME_TOKEN_H_
#define TALLY_SERVER_WATCH_RESUME_TOKEN_H_

// WatchState's resume token: a position in a scenario's changes topic, the next offset per
// partition. Every event before the position has been delivered (or did not match the watch).
// Opaque and versioned for clients ("r1." + base64url of a tally.internal.v1.WatchPosition).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::watch {

struct Position {
  std::string scenario;
  std::vector<int64_t> offsets;  // one per partition
};

std::string EncodeResumeToken(const Position& position);
// INVALID_ARGUMENT naming resume_token if `text` is not a token of `scenario` with `partitions`.
absl::StatusOr<Position> ParseResumeToken(const std::string& text, const std::string& scenario,
                                          int32_t partitions);

}  // namespace tally::watch

#endif  // TALLY_SERVER_WATCH_RESUME_TOKEN_H_
