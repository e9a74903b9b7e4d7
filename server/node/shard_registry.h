#ifndef TALLY_SERVER_NODE_SHARD_REGISTRY_H_
#define TALLY_SERVER_NODE_SHARD_REGISTRY_H_

// ShardRegistry knows the shards a node holds, their role and progress. The processor adds and
// removes entries as partitions are assigned and revoked and reports progress after every commit;
// readers (gRPC threads) look shards up, read them through snapshots, and wait for an offset to
// be applied (read-your-writes), blocking (WaitApplied) or not (WhenApplied: one thread of the
// registry's own answers every read that waits, so a flood of read-your-writes costs no thread
// per read); the membership publisher waits for changes of roles. Thread-safe.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
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
  ShardRegistry();
  // Answers the reads still waiting in WhenApplied with ABORTED (the node is stopping), on the
  // calling thread.
  ~ShardRegistry();
  ShardRegistry(const ShardRegistry&) = delete;
  ShardRegistry& operator=(const ShardRegistry&) = delete;

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
  // WaitApplied without blocking the caller (a gRPC callback thread): calls `done` with what
  // WaitApplied would return, at once on the calling thread if the answer is known now, else on
  // the registry's thread as soon as it is (within microseconds of the SetProgress, SetRole or
  // Remove that settles it, or of `deadline`). `done` runs outside the registry's lock and may
  // call it; it must not block, as it holds up the answers of the reads behind it.
  void WhenApplied(const std::string& scenario, int32_t partition, int64_t offset,
                   absl::Time deadline, std::function<void(absl::Status)> done) const;

  // Counts changes of the set of shards and of their roles (not of progress).
  uint64_t generation() const;
  // Waits until generation() != `seen` or `deadline`; returns the generation then.
  uint64_t WaitForChange(uint64_t seen, absl::Time deadline) const;

 private:
  struct Waiter {
    std::string key;
    std::string scenario;
    int32_t partition;
    int64_t offset;
    absl::Time deadline;
    std::function<void(absl::Status)> done;
  };

  static std::string Key(const std::string& scenario, int32_t partition);
  // WaitApplied's answer if it is known now (at `deadline` at the latest), else nullopt.
  std::optional<absl::Status> AppliedStatus(const std::string& key, const std::string& scenario,
                                            int32_t partition, int64_t offset,
                                            absl::Time deadline) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The registry's thread: answers the waiters of WhenApplied.
  void AnswerWaiters() const;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, ShardInfo> shards_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Counts every change a waiter may be waiting for (progress, roles, entries) and every new
  // waiter, so the registry's thread looks again only when something changed.
  mutable uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread waiter_thread_;  // last: starts once the members above exist
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_SHARD_REGISTRY_H_
