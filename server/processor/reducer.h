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
// config is unusable (no kind set, empty value, n < 1, negative min_votes, unknown tie_policy),
// e.g. "reducer.threshold.n: must be >= 1, got 0". The first problem in field order is reported.
//
// The built-in reducers, with n = the number of live votes and P = `previous`:
//
//   Zero live votes give "" (no state) for every reducer, whatever its tie policy, default_state
//   or `otherwise`: a state that no live voter stands behind is not shared state, so an object
//   loses its state when its last report expires.
//
//   majority    The state of strictly more than n/2 votes. No winner (no such state, or
//               n < min_votes): TIE_POLICY_KEEP_PREVIOUS gives P (which may be ""),
//               TIE_POLICY_DEFAULT gives default_state ("" = no state).
//   plurality   The state with the most votes. Several tied: P if it is one of them, else the
//               smallest of them (byte-wise). n < min_votes: P, as majority's default policy
//               does — below the quorum the decision does not change.
//   any         `value` if at least one vote is `value`, else `otherwise`.
//   all         `value` if every vote is `value`, else `otherwise`.
//   latest      The state of the vote with the greatest observed_at_ms; ties: the greater
//               agent_id (byte-wise).
//   threshold   `value` if at least `n` votes are `value`, else `otherwise`.
//
// A vote for "" is a vote like any other (it counts towards n and can win, giving no state).
// The result does not depend on the order of `votes` (only on the set), and the reducers do not
// allocate beyond the returned string unless a single object has many distinct states.
// name() is the config's field name: "majority", "plurality", "any", "all", "latest", "threshold".
absl::StatusOr<std::unique_ptr<Reducer>> NewReducer(const config::v1::Reducer& config);

}  // namespace tally::processor

#endif  // TALLY_SERVER_PROCESSOR_REDUCER_H_
