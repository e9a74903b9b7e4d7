#ifndef TALLY_SERVER_NODE_SHARD_FILES_H_
#define TALLY_SERVER_NODE_SHARD_FILES_H_

// ShardFiles opens a node's shards: partition p of scenario s lives in <data_dir>/<s>/<p>, the
// same directory whether the node holds it as active or as standby, so a standby that becomes
// active replays only what it had not applied yet.
//
// LMDB forbids opening one environment twice in a process (closing either handle drops the other's
// locks), and a shard outlives its role while readers still hold it. So Open() hands out the
// instance that is still alive, if any, and opens the directory only when none is.
//
// Thread-safe.

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/storage/shard.h"
#include "tally/config/v1/config.pb.h"

namespace tally::node {

class ShardFiles {
 public:
  // `config` must outlive this.
  explicit ShardFiles(const config::v1::Config& config) : config_(config) {}

  // The shard of `partition` of `scenario`, created if missing. A directory written by another
  // schema version is renamed to <dir>.schema-mismatch-<ms> (kept for the operator) and a fresh
  // shard is created in its place: the changelog restores it.
  absl::StatusOr<std::shared_ptr<storage::Shard>> Open(const std::string& scenario,
                                                       int32_t partition);

 private:
  absl::StatusOr<std::unique_ptr<storage::Shard>> OpenDir(const std::string& dir) const;

  const config::v1::Config& config_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<storage::Shard>> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_SHARD_FILES_H_
