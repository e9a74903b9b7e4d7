#ifndef TALLY_AGENT_RUNNER_AGENT_H_
#define TALLY_AGENT_RUNNER_AGENT_H_

// Agent: the running sidecar. Two threads: the check thread runs the Schedule's due checks (one
// at a time, so a slow check delays the others by up to its timeout) and submits their reports
// to the Outbox; the delivery thread drives the Outbox. Stop ends both and moves the reports
// still in memory to the spool, so a restart delivers them.

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/reporter/clock.h"
#include "agent/reporter/outbox.h"
#include "agent/runner/schedule.h"

namespace tally::agent {

class Agent {
 public:
  // All three must outlive the Agent.
  Agent(Schedule& schedule, Outbox& outbox, const Clock& clock);
  ~Agent();  // Stop()
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Starts the threads. Call once.
  void Start();
  // Stops the threads (waiting for a check or a send in progress to end: at most its timeout)
  // and flushes memory to the spool. Idempotent. Any thread but the agent's own.
  void Stop();

 private:
  void CheckLoop();
  void DeliveryLoop();

  // Constant after construction.
  Schedule& schedule_;
  Outbox& outbox_;
  const Clock& clock_;

  absl::Mutex mu_;
  bool stop_checks_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_delivery_ ABSL_GUARDED_BY(mu_) = false;

  std::thread checker_;
  std::thread deliverer_;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_RUNNER_AGENT_H_
