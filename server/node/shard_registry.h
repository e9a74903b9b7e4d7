#ifndef TALLY_SERVER_NODE_SHARD_REGISTRY_H_
#define TALLY_SERVER_NODE_SHARD_REGISTRY_H_

// ShardRegistry knows the shards a node holds, their role and progress. The processor adds and
// removes entries as partitions are assigned and revoked and reports progress after every commit;
// readers (gRPC threads) look shards up, read them through snapshots, and wait for an offset to
// be applied (read-your-writes); the membership publisher waits for changes of roles. Thread-safe.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/storage/shard.h"

namespace tally::node {

enum class ShardRole { kRestoring, kActive, kStandby };

struct ShardInfo {
  std::string scenario;
  int32_t partition = 0;
  ShardRole role = ShardRole::kRestoring;
  std::shared_ptr<storage::Shard> shard;  // null while not open
  int64_t applied_offset = 0;  // next reports-topic offset to apply: all before it are in the shard
  int64_t end_offset = 0;      // reports-topic end offset as the node last saw it
  int64_t since_ms = 0;        // when the shard was put in its current role (Unix ms)
  // Reports the shard has yet to reflect (while restoring: what is left to restore).
  int64_t lag() const { return std::max<int64_t>(0, end_offset - applied_offset); }
};

class ShardRegistry {
 public:
  // Adds or replaces the entry; since_ms is set to now.
  void Put(ShardInfo info);
  void SetRole(const std::string& scenario, int32_t partition, ShardRole role);
  // Records the shard's progress after a commit. end_offset < 0 keeps the previous end offset.
  void SetProgress(const std::string& scenario, int32_t partition, int64_t applied_offset,
                   int64_t end_offset);
  void Remove(const std::string& scenario, int32_t partition);
  // The entry, if this node holds the shard.
  std::optional<ShardInfo> Get(const std::string& scenario, int32_t partition) const;
  std::vector<ShardInfo> List() const;

  // Waits until the shard holds the reports-topic record at `offset` (applied_offset > offset)
  // in the active role. OK then; ABORTED if the node does not hold the shard as active (or stops
  // holding it while waiting); DEADLINE_EXCEEDED at `deadline`, with the applied offset named.
  absl::Status WaitApplied(const std::string& scenario, int32_t partition, int64_t offset,
                           absl::Time deadline) const;

  // Counts changes of the set of shards and of their roles (not of progress).
  uint64_t generation() const;
  // Waits until generation() != `seen` or `deadline`; returns the generation then.
  uint64_t WaitForChange(uint64_t seen, absl::Time deadline) const;

 private:
  static std::string Key(const std::string& scenario, int32_t partition);
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, ShardInfo> shards_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_SHARD_REGISTRY_H_
