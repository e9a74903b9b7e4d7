#ifndef TALLY_SERVER_NODE_SHARD_REGISTRY_H_
#define TALLY_SERVER_NODE_SHARD_REGISTRY_H_

// ShardRegistry knows the shards a node holds, their role and progress. The processor adds and
// removes entries as partitions are assigned and revoked; readers (gRPC threads) look shards up
// and read them through snapshots. Thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/storage/shard.h"

namespace tally::node {

enum class ShardRole { kRestoring, kActive, kStandby };

struct ShardInfo {
  std::string scenario;
  int32_t partition = 0;
  ShardRole role = ShardRole::kRestoring;
  std::shared_ptr<storage::Shard> shard;  // null while not open
};

class ShardRegistry {
 public:
  void Put(ShardInfo info);
  void SetRole(const std::string& scenario, int32_t partition, ShardRole role);
  void Remove(const std::string& scenario, int32_t partition);
  // The entry, if this node holds the shard.
  std::optional<ShardInfo> Get(const std::string& scenario, int32_t partition) const;
  std::vector<ShardInfo> List() const;

 private:
  static std::string Key(const std::string& scenario, int32_t partition);
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, ShardInfo> shards_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_SHARD_REGISTRY_H_
