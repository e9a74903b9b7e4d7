#ifndef TALLY_CLIENT_RETRY_H_
#define TALLY_CLIENT_RETRY_H_

// When and how long tally::Client waits before trying a call again. Part of the client's public
// API (ClientOptions::retry); the functions are exposed for tests.

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tally {

// Retries with exponential backoff and jitter. Only UNAVAILABLE is retried (the routers' code for
// "retry the call": a router that cannot be reached, is shutting down, or found no owner for the
// partition in time); every other code is the answer. Each retry goes to the next router
// endpoint.
struct RetryPolicy {
  // Attempts per call, the first one included; 1 disables retries. At least 1.
  int max_attempts = 5;
  // The wait before the first retry; each further retry waits `multiplier` times longer, up to
  // `max_backoff`.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  double multiplier = 2.0;
  // Each wait is scaled by a factor drawn uniformly from [1 - jitter, 1 + jitter], so clients that
  // lost their router at the same moment do not come back in lockstep. In [0, 1).
  double jitter = 0.2;
};

// The wait before retry number `retry` (1 = the first retry):
// min(max_backoff, initial_backoff * multiplier^(retry-1)) * u, u uniform in
// [1 - jitter, 1 + jitter].
absl::Duration BackoffDelay(const RetryPolicy& policy, int retry, absl::BitGenRef rng);

// True for the codes a call is retried on (UNAVAILABLE only).
bool IsRetryable(const absl::Status& status);

}  // namespace tally

#endif  // TALLY_CLIENT_RETRY_H_
