#ifndef TALLY_AGENT_REPORTER_BACKOFF_H_
#define TALLY_AGENT_REPORTER_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace tally::agent {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(30);
  double jitter = 0.2;  // in [0, 1)
};

// Exponential backoff with jitter: after the n-th consecutive failure the wait is
// min(max, initial * 2^(n-1) * u) with u uniform in [1 - jitter, 1 + jitter]. The jitter keeps
// many agents that lost their routers at once from coming back in lockstep. Not thread-safe.
class Backoff {
 public:
  Backoff(BackoffOptions options, uint64_t seed);

  // Records one more failure and returns how long to wait before the next attempt.
  absl::Duration Next();
  // After a success: the next failure waits `initial` again.
  void Reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  const BackoffOptions options_;
  std::mt19937_64 rng_;
  int failures_ = 0;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_REPORTER_BACKOFF_H_
