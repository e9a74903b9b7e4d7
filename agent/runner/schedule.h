#ifndef TALLY_AGENT_RUNNER_SCHEDULE_H_
#define TALLY_AGENT_RUNNER_SCHEDULE_H_

// Schedule: when each watch's check runs, and which results become reports.
//
// A watch's check runs at start, then every `interval` drawn from interval * [1 - jitter,
// 1 + jitter], and in any case no later than ttl/2 after its last report. A result becomes a
// report when the state differs from the last one reported (a change) or when ttl/2 has passed
// since that report (a refresh, so the vote never expires while the object is watched). A check
// that yields no state reports the watch's error_state if it has one; otherwise nothing is
// reported (logged as a warning) and the next state found is reported as a change.
//
// All time comes from the injected Clock and every check runs on the calling thread, so tests
// drive it with a ManualClock and scripted checks, without sleeping. Not thread-safe: one thread
// calls RunDue / NextDue / RunAllOnce.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/check/check.h"
#include "agent/reporter/clock.h"
#include "tally/agent/v1/agent.pb.h"
#include "tally/v1/state.pb.h"

namespace tally::agent {

using CheckFactory = std::function<absl::StatusOr<std::unique_ptr<Check>>(const v1::Check&)>;

class Schedule {
 public:
  // From a validated config with defaults applied (config.h). INVALID_ARGUMENT if a check cannot
  // be made. `checks` makes the check runners (NewCheck in production). `clock` must outlive
  // the Schedule.
  static absl::StatusOr<std::unique_ptr<Schedule>> Create(const v1::AgentConfig& config,
                                                          const Clock& clock, CheckFactory checks,
                                                          uint64_t seed);

  // Runs every check due now (in config order) and returns the reports to send, in that order.
  std::vector<tally::v1::ReportStateRequest> RunDue();

  // When the next check is due.
  absl::Time NextDue() const;

  // --once: runs every check now, regardless of schedule, and returns what each watch would
  // report (the report, or why there is none), in config order. Does not change the schedule.
  std::vector<absl::StatusOr<tally::v1::ReportStateRequest>> RunAllOnce();

 private:
  struct Watch {
    v1::Watch config;
    std::unique_ptr<Check> check;
    absl::Duration interval;
    absl::Duration ttl;
    absl::Time next_due;
    std::optional<std::string> last_state;  // last reported
    absl::Time last_report = absl::InfinitePast();
  };

  Schedule(std::string agent_id, double jitter, const Clock& clock, uint64_t seed);

  // The state the check yields now, error_state if it yields none, or why there is none.
  absl::StatusOr<std::string> Observe(Watch& w);
  tally::v1::ReportStateRequest MakeReport(const Watch& w, const std::string& state,
                                           absl::Time now) const;
  absl::Duration Jittered(absl::Duration interval);

  const std::string agent_id_;
  const double jitter_;
  const Clock& clock_;
  std::mt19937_64 rng_;
  std::vector<Watch> watches_;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_RUNNER_SCHEDULE_H_
