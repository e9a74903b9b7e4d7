#include "tests/integration/watch_reactor.h"

#include "absl/time/clock.h"

namespace tally::test {

void WatchReactor::Start(v1::StateService::Stub& stub, v1::WatchStateRequest request) {
  request_ = std::move(request);
  stub.async()->WatchState(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void WatchReactor::Stop() {
  context_.TryCancel();
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return done_; });
}

int WatchReactor::responses() {
  std::lock_guard lock(mu_);
  return responses_;
}

void WatchReactor::OnReadDone(bool ok) {
  if (!ok) return;
  const absl::Time received = absl::Now();
  {
    std::lock_guard lock(mu_);
    ++responses_;
    OnResponse(response_, received);
  }
  StartRead(&response_);
}

void WatchReactor::OnDone(const grpc::Status&) {
  std::lock_guard lock(mu_);
  done_ = true;
  cv_.notify_all();
}

}  // namespace tally::test
