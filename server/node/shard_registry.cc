#include "server/node/shard_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::node {

std::string ShardRegistry::Key(const std::string& scenario, int32_t partition) {
  return absl::StrCat(scenario, "/", partition);
}

void ShardRegistry::Put(ShardInfo info) {
  absl::MutexLock lock(&mu_);
  std::string key = Key(info.scenario, info.partition);
  shards_[key] = std::move(info);
}

void ShardRegistry::SetRole(const std::string& scenario, int32_t partition, ShardRole role) {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(Key(scenario, partition));
  if (it != shards_.end()) it->second.role = role;
}

void ShardRegistry::Remove(const std::string& scenario, int32_t partition) {
  absl::MutexLock lock(&mu_);
  shards_.erase(Key(scenario, partition));
}

std::optional<ShardInfo> ShardRegistry::Get(const std::string& scenario,
                                            int32_t partition) const {
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

}  // namespace tally::node
