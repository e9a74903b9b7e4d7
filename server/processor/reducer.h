#ifndef TALLY_SERVER_PROCESSOR_REDUCER_H_
#define TALLY_SERVER_PROCESSOR_REDUCER_H_

// A Reducer turns the live votes of one object (and its previous state) into its new state.
// Reducers are pure and deterministic: the same votes and previous state give the same result on
// every node, which is what keeps replicas identical. Thread-safe (const, no state).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tally/config/v1/config.pb.h"

namespace tally::processor {

struct LiveVote {
  std::string_view agent_id;
  std::string_view state;
  int64_t observed_at_ms = 0;
};

class Reducer {
 public:
  virtual ~Reducer() = default;
  // `votes` are the live votes, sorted by agent_id, one per agent. `previous` is the current state
  // ("" = none). Returns the new state; "" means no state.
  virtual std::string Reduce(absl::Span<const LiveVote> votes, std::string_view previous) const = 0;
  virtual std::string_view name() const = 0;
};

// Builds the reducer a scenario's config asks for. INVALID_ARGUMENT naming the field when the
// config is unusable (no kind set, empty value, n < 1, negative min_votes).
absl::StatusOr<std::unique_ptr<Reducer>> NewReducer(const config::v1::Reducer& config);

}  // namespace tally::processor

#endif  // TALLY_SERVER_PROCESSOR_REDUCER_H_
