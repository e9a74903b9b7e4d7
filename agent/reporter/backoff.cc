#include "agent/reporter/backoff.h"

#include <algorithm>

namespace tally::agent {

Backoff::Backoff(BackoffOptions options, uint64_t seed) : options_(options), rng_(seed) {}

absl::Duration Backoff::Next() {
  // Double up to the cap without overflowing: stop doubling once past it.
  absl::Duration base = options_.initial;
  for (int i = 0; i < failures_ && base < options_.max; ++i) base *= 2;
  base = std::min(base, options_.max);
  ++failures_;
  std::uniform_real_distribution<double> u(1.0 - options_.jitter, 1.0 + options_.jitter);
  return std::min(options_.max, base * u(rng_));
}

}  // namespace tally::agent
