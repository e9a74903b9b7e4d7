#include "tests/testing/wait.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace tally::test {

bool WaitFor(std::function<bool()> cond, absl::Duration deadline) {
  const absl::Time end = absl::Now() + deadline;
  absl::Duration pause = absl::Milliseconds(1);
  for (;;) {
    if (cond()) return true;
    const absl::Time now = absl::Now();
    if (now >= end) return false;
    absl::SleepFor(std::min(pause, end - now));
    pause = std::min(pause * 2, absl::Milliseconds(50));
  }
}

}  // namespace tally::test
