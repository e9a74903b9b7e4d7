#ifndef TALLY_SERVER_NODE_SHARD_QUERIES_H_
#define TALLY_SERVER_NODE_SHARD_QUERIES_H_

// ShardQueries answers reads of the shards a node holds: point reads that may wait for an offset
// (read-your-writes) and range scans. It is the logic behind the internal ShardService, and what a
// router in the same process calls directly instead of going through the network.
//
// Which copy answers: the active shard; with max_lag > 0 also a standby whose lag is at most
// max_lag. Errors: ABORTED when the node holds no copy in an acceptable role (the caller's
// routing table is stale), UNAVAILABLE while the shard restores, DEADLINE_EXCEEDED when
// min_offset was not applied by the deadline, and the shard's own errors.
//
// Thread safety: safe for concurrent use from any thread (gRPC threads).

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/node/shard_registry.h"
#include "tally/internal/v1/shard.pb.h"
#include "tally/v1/state.pb.h"

namespace tally::node {

class ShardQueries {
 public:
  // `registry` must outlive this.
  ShardQueries(const ShardRegistry& registry, std::string node_id);

  // found = false when the object has no state (absent, or no live votes, no winner, no pin).
  absl::StatusOr<internal::v1::ShardGetResponse> Get(const internal::v1::ShardGetRequest& request,
                                                     absl::Time deadline) const;
  // Get without blocking the caller (a gRPC callback thread): answers inline, except a read after
  // a write (min_offset) whose offset is not applied yet, which the registry's thread answers once
  // it is or `deadline` passes (ShardRegistry::WhenApplied). The caller must keep this alive until
  // `done` has returned.
  void GetAsync(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                std::function<void(absl::StatusOr<internal::v1::ShardGetResponse>)> done) const;
  absl::StatusOr<internal::v1::ShardScanResponse> Scan(
      const internal::v1::ShardScanRequest& request) const;

  // Streams the snapshot in chunks to `emit` (which returns false to stop early: CANCELLED), the
  // last one with done = true and changes_offset. Active copies only. The snapshot holds one
  // LMDB read transaction while it streams.
  absl::Status Snapshot(const internal::v1::ShardSnapshotRequest& request,
                        const std::function<bool(const internal::v1::ShardSnapshotResponse&)>& emit)
      const;

  const std::string& node_id() const { return node_id_; }

 private:
  // The point read of Get, after any wait for min_offset.
  absl::StatusOr<internal::v1::ShardGetResponse> Read(
      const internal::v1::ShardGetRequest& request) const;
  // The shard, if this node may answer for it with `max_lag`.
  absl::StatusOr<ShardInfo> Acceptable(const std::string& scenario, int32_t partition,
                                       int64_t max_lag) const;

  // Constant after construction.
  const ShardRegistry& registry_;
  const std::string node_id_;
};

// The public form of a stored object.
v1::ObjectState ToObjectState(const std::string& scenario, const std::string& object_key,
                              const storage::ObjectData& data);

// True if the stored object counts as having a state for readers: GetState answers NOT_FOUND and
// ListState skips it otherwise.
bool HasState(const records::v1::StoredState& state);

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_SHARD_QUERIES_H_
