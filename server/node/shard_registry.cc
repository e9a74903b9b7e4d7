#include "server/node/shard_registry.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::node {

ShardRegistry::ShardRegistry() : waiter_thread_([this] { AnswerWaiters(); }) {}

ShardRegistry::~ShardRegistry() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  waiter_thread_.join();
  std::vector<Waiter> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(waiters_);
  }
  for (Waiter& w : left) {
    w.done(absl::AbortedError(absl::StrCat("node stopping: partition ", w.partition,
                                           " of scenario ", w.scenario, " is no longer served")));
  }
}

std::string ShardRegistry::Key(const std::string& scenario, int32_t partition) {
  return absl::StrCat(scenario, "/", partition);
}

void ShardRegistry::Put(ShardInfo info) {
  absl::MutexLock lock(&mu_);
  info.since_ms = absl::ToUnixMillis(absl::Now());
  std::string key = Key(info.scenario, info.partition);
  shards_[key] = std::move(info);
  ++generation_;
  ++changes_;
}

void ShardRegistry::SetRole(const std::string& scenario, int32_t partition, ShardRole role) {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(Key(scenario, partition));
  if (it == shards_.end() || it->second.role == role) return;
  it->second.role = role;
  it->second.since_ms = absl::ToUnixMillis(absl::Now());
  ++generation_;
  ++changes_;
}

void ShardRegistry::SetProgress(const std::string& scenario, int32_t partition,
                                int64_t applied_offset, int64_t end_offset) {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(Key(scenario, partition));
  if (it == shards_.end()) return;
  it->second.applied_offset = applied_offset;
  if (end_offset >= 0) it->second.end_offset = end_offset;
  ++changes_;
}

void ShardRegistry::Remove(const std::string& scenario, int32_t partition) {
  absl::MutexLock lock(&mu_);
  if (shards_.erase(Key(scenario, partition)) > 0) {
    ++generation_;
    ++changes_;
  }
}

std::optional<ShardInfo> ShardRegistry::Get(const std::string& scenario, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(Key(scenario, partition));
  if (it == shards_.end()) return std::nullopt;
  return it->second;
}

std::vector<ShardInfo> ShardRegistry::List() const {
  std::vector<ShardInfo> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, info] : shards_) out.push_back(info);
  }
  std::sort(out.begin(), out.end(), [](const ShardInfo& a, const ShardInfo& b) {
    return std::tie(a.scenario, a.partition) < std::tie(b.scenario, b.partition);
  });
  return out;
}

std::optional<absl::Status> ShardRegistry::AppliedStatus(const std::string& key,
                                                         const std::string& scenario,
                                                         int32_t partition, int64_t offset,
                                                         absl::Time deadline) const {
  auto it = shards_.find(key);
  if (it == shards_.end() || it->second.role != ShardRole::kActive) {
    return absl::AbortedError(absl::StrCat("partition ", partition, " of scenario ", scenario,
                                           " is not active on this node"));
  }
  if (it->second.applied_offset > offset) return absl::OkStatus();
  // (InfiniteFuture: WaitApplied's condition, evaluated on every release of mu_, reads no clock.)
  if (deadline == absl::InfiniteFuture() || absl::Now() < deadline) return std::nullopt;
  return absl::DeadlineExceededError(absl::StrCat("offset ", offset, " of partition ", partition,
                                                  " not applied before the "
                                                  "deadline (applied up to ",
                                                  it->second.applied_offset - 1, ")"));
}

absl::Status ShardRegistry::WaitApplied(const std::string& scenario, int32_t partition,
                                        int64_t offset, absl::Time deadline) const {
  const std::string key = Key(scenario, partition);
  auto settled = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return AppliedStatus(key, scenario, partition, offset, absl::InfiniteFuture()).has_value();
  };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
  return *AppliedStatus(key, scenario, partition, offset, absl::InfinitePast());
}

void ShardRegistry::WhenApplied(const std::string& scenario, int32_t partition, int64_t offset,
                                absl::Time deadline,
                                std::function<void(absl::Status)> done) const {
  std::string key = Key(scenario, partition);
  std::optional<absl::Status> now;
  {
    absl::MutexLock lock(&mu_);
    now = AppliedStatus(key, scenario, partition, offset, deadline);
    if (!now.has_value()) {
      waiters_.push_back(Waiter{std::move(key), scenario, partition, offset, deadline,
                                std::move(done)});
      ++changes_;  // the thread may have to wake earlier, for this deadline
      return;
    }
  }
  done(*std::move(now));
}

void ShardRegistry::AnswerWaiters() const {
  uint64_t seen = 0;
  std::vector<std::pair<Waiter, absl::Status>> answered;
  mu_.Lock();
  while (true) {
    absl::Time first = absl::InfiniteFuture();
    for (const Waiter& w : waiters_) first = std::min(first, w.deadline);
    auto work = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return stop_ || (!waiters_.empty() && changes_ != seen);
    };
    mu_.AwaitWithDeadline(absl::Condition(&work), first);
    if (stop_) break;
    seen = changes_;
    // Answer the settled waiters, keeping the others in their order.
    auto keep = waiters_.begin();
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      std::optional<absl::Status> status =
          AppliedStatus(it->key, it->scenario, it->partition, it->offset, it->deadline);
      if (status.has_value()) {
        answered.emplace_back(std::move(*it), *std::move(status));
      } else {
        if (keep != it) *keep = std::move(*it);
        ++keep;
      }
    }
    waiters_.erase(keep, waiters_.end());
    if (answered.empty()) continue;
    mu_.Unlock();
    for (auto& [waiter, status] : answered) waiter.done(std::move(status));
    answered.clear();
    mu_.Lock();
  }
  mu_.Unlock();
}

uint64_t ShardRegistry::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

uint64_t ShardRegistry::WaitForChange(uint64_t seen, absl::Time deadline) const {
  auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return generation_ != seen; };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  return generation_;
}

}  // namespace tally::node
