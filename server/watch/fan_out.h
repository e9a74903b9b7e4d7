#ifndef TALLY_SERVER_WATCH_FAN_OUT_H_
#define TALLY_SERVER_WATCH_FAN_OUT_H_

// FanOut runs one call per item over a fixed set of threads, the caller's included, and returns
// when every call has returned. Thread t takes the items t, t + threads, t + 2 * threads, ...:
// neighbouring items run at the same time on different threads.
//
// Thread safety: Run from one thread at a time (the feed's).

#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tally::watch {

class FanOut {
 public:
  // `threads` >= 1 counts the caller of Run.
  explicit FanOut(int threads);
  ~FanOut();
  FanOut(const FanOut&) = delete;
  FanOut& operator=(const FanOut&) = delete;

  void Run(size_t items, const std::function<void(size_t)>& call);

 private:
  void Work(int thread);
  void Take(int thread, size_t items, const std::function<void(size_t)>& call) const;

  const int threads_;
  std::vector<std::thread> helpers_;

  absl::Mutex mu_;
  // Guarded by mu_.
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 0;  // Run calls so far
  size_t items_ ABSL_GUARDED_BY(mu_) = 0;
  const std::function<void(size_t)>* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // helpers still in the current round
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::watch

#endif  // TALLY_SERVER_WATCH_FAN_OUT_H_
