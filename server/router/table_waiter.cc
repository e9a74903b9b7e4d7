#include "server/router/table_waiter.h"

#include <algorithm>

namespace tally::router {

TableWaiter::TableWaiter(const RoutingSource& routes)
    : routes_(routes), thread_([this] { Run(); }) {}

TableWaiter::~TableWaiter() {
  std::vector<Parked> left;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  {
    absl::MutexLock lock(&mu_);
    left.swap(parked_);
  }
  for (Parked& p : left) p.resume(false);
}

void TableWaiter::Park(uint64_t version, absl::Time retry_at, Resume resume) {
  absl::MutexLock lock(&mu_);
  parked_.push_back(Parked{version, retry_at, std::move(resume)});
}

void TableWaiter::Run() {
  std::vector<Parked> due;
  mu_.Lock();
  while (true) {
    auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !parked_.empty(); };
    mu_.Await(absl::Condition(&work));
    if (stop_) break;
    uint64_t oldest = parked_.front().version;
    absl::Time first = parked_.front().retry_at;
    for (const Parked& p : parked_) {
      oldest = std::min(oldest, p.version);
      first = std::min(first, p.retry_at);
    }
    mu_.Unlock();
    const uint64_t latest =
        routes_.WaitNewer(oldest, std::min(first, absl::Now() + kWakeCheck))->version();
    const absl::Time now = absl::Now();
    mu_.Lock();
    auto ready = [latest, now](const Parked& p) { return p.version < latest || p.retry_at <= now; };
    auto split = std::partition(parked_.begin(), parked_.end(),
                                [&](const Parked& p) { return !ready(p); });
    due.assign(std::make_move_iterator(split), std::make_move_iterator(parked_.end()));
    parked_.erase(split, parked_.end());
    mu_.Unlock();
    // Outside the lock: a resumed read may park again.
    for (Parked& p : due) p.resume(true);
    due.clear();
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace tally::router
