#include "agent/runner/agent.h"

#include "server/common/log.h"

namespace tally::agent {

Agent::Agent(Schedule& schedule, Outbox& outbox, const Clock& clock)
    : schedule_(schedule), outbox_(outbox), clock_(clock) {}

Agent::~Agent() { Stop(); }

void Agent::Start() {
  checker_ = std::thread([this] { CheckLoop(); });
  deliverer_ = std::thread([this] { DeliveryLoop(); });
}

void Agent::Stop() {
  if (!checker_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stop_checks_ = true;
  }
  // The check thread may wait in Submit for the delivery thread, so that one stops second.
  checker_.join();
  {
    absl::MutexLock lock(&mu_);
    stop_delivery_ = true;
  }
  outbox_.Wake();
  deliverer_.join();
  outbox_.Flush();
}

void Agent::CheckLoop() {
  for (;;) {
    outbox_.Submit(schedule_.RunDue());
    const absl::Duration wait = schedule_.NextDue() - clock_.Now();
    absl::MutexLock lock(&mu_);
    if (wait > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(&stop_checks_), wait);
    }
    if (stop_checks_) return;
  }
}

void Agent::DeliveryLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_delivery_) return;
    }
    outbox_.Wait(outbox_.DeliverOnce());
  }
}

}  // namespace tally::agent
