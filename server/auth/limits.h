#ifndef TALLY_SERVER_AUTH_LIMITS_H_
#define TALLY_SERVER_AUTH_LIMITS_H_

// Per-principal limits of the public API: a token bucket for reports and a cap on concurrent
// watches. Thread-safe. The clock is injected so tests control time.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tally::auth {

class ReportRateLimiter {
 public:
  // `per_second` <= 0: unlimited. `burst`: the bucket's size (at least 1).
  ReportRateLimiter(
      double per_second, int burst, std::function<absl::Time()> now = [] { return absl::Now(); });
  // OK and `count` (>= 1) tokens taken, or RESOURCE_EXHAUSTED naming the principal, the limit,
  // and when to retry; nothing is taken then. A count larger than the burst never fits the
  // bucket: INVALID_ARGUMENT saying so (send smaller batches).
  absl::Status Take(const std::string& principal, int count = 1);

 private:
  struct Bucket {
    double tokens;
    absl::Time refilled;
  };
  const double per_second_;
  const double burst_;
  const std::function<absl::Time()> now_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

class WatchLimiter {
 public:
  // `max` <= 0: unlimited.
  explicit WatchLimiter(int max) : max_(max) {}
  // A lease held for the life of one watch (the count drops when it is destroyed), or
  // RESOURCE_EXHAUSTED naming the principal and the limit.
  absl::Status Acquire(const std::string& principal, std::shared_ptr<void>* lease);

 private:
  const int max_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::auth

#endif  // TALLY_SERVER_AUTH_LIMITS_H_
