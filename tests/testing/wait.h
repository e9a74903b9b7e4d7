#ifndef TALLY_TESTS_TESTING_WAIT_H_
#define TALLY_TESTS_TESTING_WAIT_H_

#include <functional>

#include "absl/time/time.h"

namespace tally::test {

// Waits until `cond` returns true or `deadline` (from now) passes, checking it right away and
// then with short, growing pauses (1 ms up to 50 ms). Returns true as soon as `cond` holds, false
// if it still does not hold when checked at the deadline. This is a condition wait with a bound,
// for conditions no callback announces (a broker's state, another process); it is not a way to
// give something "enough time". `cond` runs on the calling thread.
bool WaitFor(std::function<bool()> cond, absl::Duration deadline);

}  // namespace tally::test

#endif  // TALLY_TESTS_TESTING_WAIT_H_
