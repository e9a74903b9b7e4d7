#ifndef TALLY_SERVER_ROUTER_TABLE_WAITER_H_
#define TALLY_SERVER_ROUTER_TABLE_WAITER_H_

// TableWaiter parks asynchronous reads that tried every copy of their partition until a newer
// routing table exists or their retry time comes, the way a synchronous read waits in
// RoutingSource::WaitNewer, but without holding the caller's thread: gRPC callback threads must
// not block. One thread of its own waits for all parked reads and resumes them (on that thread).
//
// A newer table resumes its reads at once; a retry time is kept within kWakeCheck (the thread
// cannot be woken out of WaitNewer by a read parked with an earlier time, so it waits in slices
// of that length while reads are parked, and not at all when none are).
//
// Thread safety: Park may be called from any thread.

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/router/membership_view.h"

namespace tally::router {

inline constexpr absl::Duration kWakeCheck = absl::Milliseconds(5);

class TableWaiter {
 public:
  // true: a table newer than the parked version exists, or the retry time came; false: the
  // waiter is being destroyed, give up.
  using Resume = std::function<void(bool retry)>;

  // `routes` must outlive the waiter.
  explicit TableWaiter(const RoutingSource& routes);
  // Resumes the reads still parked with false (on the calling thread) once the thread stopped.
  ~TableWaiter();

  // Runs `resume(true)` on the waiter's thread once a table newer than `version` exists or at
  // `retry_at`, whichever comes first; never before Park returns.
  void Park(uint64_t version, absl::Time retry_at, Resume resume);

 private:
  struct Parked {
    uint64_t version;
    absl::Time retry_at;
    Resume resume;
  };

  void Run();

  // Constant after construction.
  const RoutingSource& routes_;

  absl::Mutex mu_;
  // Guarded by mu_.
  std::vector<Parked> parked_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_TABLE_WAITER_H_
