#ifndef TALLY_AGENT_REPORTER_OUTBOX_H_
#define TALLY_AGENT_REPORTER_OUTBOX_H_

// Outbox: delivers the agent's reports to the routers in the order they were made, through the
// spool whenever the routers are out.
//
// Order: reports are delivered in Submit order (so never reordered for one object). While the
// routers answer, reports wait in memory and go out in batches. When a send fails, the failed
// batch and everything queued behind it move to the spool (in order) and the outbox is "out":
// every new report is appended to the spool at once (durable before Submit returns), and
// delivery retries the spool's head with exponential backoff (RouterSender moves through the
// router list on each attempt). Once the spool is drained the outbox is back to memory. A spool
// left by an earlier run is delivered first: the outbox starts "out" if the spool is not empty.
//
// Losses are never silent: a report the spool refuses (full, I/O error) and a report a router
// refuses as INVALID_ARGUMENT (retrying cannot help; it is skipped so it does not block the
// queue) are logged as errors and counted in Stats(). Delivery is at least once: a report whose
// answer was lost, or whose acknowledgement in the spool did not reach disk before a crash, is
// sent again, after the same reports as before.
//
// Threads: Submit from any thread; DeliverOnce, Wait and Flush from one delivery thread.

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/reporter/backoff.h"
#include "agent/reporter/clock.h"
#include "agent/reporter/report_sender.h"
#include "agent/spool/spool.h"
#include "tally/v1/state.pb.h"

namespace tally::agent {

struct OutboxOptions {
  size_t max_batch = 100;  // reports per send
  // Reports waiting in memory while the routers are up; Submit blocks (for at most about one
  // send's deadline) while this many wait.
  size_t max_pending = 10000;
  BackoffOptions backoff;
  uint64_t seed = 0;  // of the backoff's jitter
};

struct OutboxStats {
  int64_t delivered = 0;
  int64_t spooled = 0;          // reports written to the spool
  int64_t lost = 0;             // refused by the spool (full) or not written (I/O error)
  int64_t refused_invalid = 0;  // refused by a router as INVALID_ARGUMENT
  int64_t failed_sends = 0;
  bool out = false;  // routers unreachable: new reports go to the spool
};

class Outbox {
 public:
  // `spool`, `sender` and `clock` must outlive the Outbox.
  Outbox(Spool& spool, ReportSender& sender, const Clock& clock, OutboxOptions options);

  // Queues `reports` for delivery after everything submitted before. Never waits for the
  // network; may wait for a spool write (routers out) or for room in memory (max_pending).
  void Submit(std::vector<tally::v1::ReportStateRequest> reports);

  // Makes one delivery attempt if one is due: a batch from the spool's head if the spool holds
  // anything, else from memory. Returns when it wants to be called again: now if there may be
  // more to do, the retry time after a failure, absl::InfiniteFuture() if nothing is queued.
  absl::Time DeliverOnce();

  // Blocks until `until` (by the clock), until a report is queued in memory, or until Wake().
  void Wait(absl::Time until);
  // Makes a Wait in progress (or the next one) return at once.
  void Wake();

  // Moves the reports waiting in memory to the spool, so a restart delivers them (shutdown).
  void Flush();

  OutboxStats Stats() const;

 private:
  // Moves pending_ to the spool and marks the outbox out.
  void SpillLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendToSpoolLocked(const std::vector<tally::v1::ReportStateRequest>& reports)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time DeliverFromSpool(absl::Time now);
  absl::Time DeliverFromMemory(absl::Time now);
  // Counts a failed send and schedules the retry.
  absl::Time FailedLocked(absl::Time now, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Spool& spool_;
  ReportSender& sender_;
  const Clock& clock_;
  const OutboxOptions options_;

  mutable absl::Mutex mu_;
  // Invariants: out_ || spool_.empty(); out_ implies pending_ is empty.
  std::deque<tally::v1::ReportStateRequest> pending_ ABSL_GUARDED_BY(mu_);
  bool out_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  Backoff backoff_ ABSL_GUARDED_BY(mu_);
  OutboxStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_REPORTER_OUTBOX_H_
