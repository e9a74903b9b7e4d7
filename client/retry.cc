#include "client/retry.h"

#include <algorithm>
#include <cmath>

#include "absl/random/distributions.h"

namespace tally {

absl::Duration BackoffDelay(const RetryPolicy& policy, int retry, absl::BitGenRef rng) {
  // Computed in double seconds: multiplier^(retry-1) overflows absl::Duration's int64 ticks long
  // before it overflows a double, and the cap applies first anyway.
  const double cap = absl::ToDoubleSeconds(policy.max_backoff);
  const double base = absl::ToDoubleSeconds(policy.initial_backoff) *
                      std::pow(policy.multiplier, std::max(0, retry - 1));
  const double jitter = std::clamp(policy.jitter, 0.0, 0.999);
  const double u = jitter > 0 ? absl::Uniform(rng, 1.0 - jitter, 1.0 + jitter) : 1.0;
  return absl::Seconds(std::min(base, cap) * u);
}

bool IsRetryable(const absl::Status& status) { return absl::IsUnavailable(status); }

}  // namespace tally
