#include "server/node/shard_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::node {

std::string ShardRegistry::Key(const std::string& scenario, int32_t partition) {
  return absl::StrCat(scenario, "/", partition);
}

void ShardRegistry::Put(ShardInfo info) {
  absl::MutexLock lock(&mu_);
  info.since_ms = absl::ToUnixMillis(absl::Now());
  std::string key = Key(info.scenario, info.partition);
  shards_[key] = std::move(info);
  ++generation_;
}

void ShardRegistry::SetRole(const std::string& scenario, int32_t partition, ShardRole role) {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(Key(scenario, partition));
  if (it == shards_.end() || it->second.role == role) return;
  it->second.role = role;
  it->second.since_ms = absl::ToUnixMillis(absl::Now());
  ++generation_;
}

void ShardRegistry::SetProgress(const std::string& scenario, int32_t partition,
                                int64_t applied_offset, int64_t end_offset) {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(Key(scenario, partition));
  if (it == shards_.end()) return;
  it->second.applied_offset = applied_offset;
  if (end_offset >= 0) it->second.end_offset = end_offset;
}

void ShardRegistry::Remove(const std::string& scenario, int32_t partition) {
  absl::MutexLock lock(&mu_);
  if (shards_.erase(Key(scenario, partition)) > 0) ++generation_;
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

absl::Status ShardRegistry::WaitApplied(const std::string& scenario, int32_t partition,
                                        int64_t offset, absl::Time deadline) const {
  const std::string key = Key(scenario, partition);
  auto settled = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = shards_.find(key);
    return it == shards_.end() || it->second.role != ShardRole::kActive ||
           it->second.applied_offset > offset;
  };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
  auto it = shards_.find(key);
  if (it == shards_.end() || it->second.role != ShardRole::kActive) {
    return absl::AbortedError(absl::StrCat("partition ", partition, " of scenario ", scenario,
                                           " is not active on this node"));
  }
  if (it->second.applied_offset > offset) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("offset ", offset, " of partition ", partition,
                                                  " not applied before the "
                                                  "deadline (applied up to ",
                                                  it->second.applied_offset - 1, ")"));
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
