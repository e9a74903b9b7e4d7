#include "server/watch/fan_out.h"

#include <algorithm>

namespace tally::watch {

FanOut::FanOut(int threads) : threads_(std::max(1, threads)) {
  for (int t = 1; t < threads_; ++t) helpers_.emplace_back([this, t] { Work(t); });
}

FanOut::~FanOut() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& helper : helpers_) helper.join();
}

void FanOut::Take(int thread, size_t items, const std::function<void(size_t)>& call) const {
  for (size_t i = thread; i < items; i += threads_) call(i);
}

void FanOut::Run(size_t items, const std::function<void(size_t)>& call) {
  if (threads_ == 1 || items < 2) {
    Take(0, items, call);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    items_ = items;
    call_ = &call;
    running_ = threads_ - 1;
    ++round_;
  }
  Take(0, items, call);
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  mu_.Await(absl::Condition(&done));
  call_ = nullptr;
}

void FanOut::Work(int thread) {
  uint64_t seen = 0;
  while (true) {
    size_t items;
    const std::function<void(size_t)>* call;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || round_ != seen; };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      seen = round_;
      items = items_;
      call = call_;
    }
    Take(thread, items, *call);
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace tally::watch
