#ifndef TALLY_SERVER_NODE_NODE_H_
#define TALLY_SERVER_NODE_NODE_H_

// Node is the node role of tallyd: it makes sure the scenarios' topics exist, runs the Processor
// on a thread of its own, answers reads of its shards (queries(), served as the internal
// ShardService), announces itself on <app>.members, and keeps the standby replicas that the
// membership places on it (StandbyReplicator). Start() and Stop() are called from one
// thread; registry() and queries() may be used from any thread.

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/node/membership.h"
#include "server/node/processor.h"
#include "server/node/shard_queries.h"
#include "server/node/shard_files.h"
#include "server/node/shard_registry.h"
#include "server/node/standby.h"
#include "tally/config/v1/config.pb.h"

namespace tally::node {

class Node {
 public:
  // `config` must outlive the Node.
  explicit Node(const config::v1::Config& config);
  ~Node();

  // Creates missing topics (FAILED_PRECONDITION on a partition-count mismatch), starts
  // processing, and announces the node at `endpoint` (host:port of its ShardService). Partitions
  // become readable as they are assigned and restored.
  // `membership` (may be null: no standbys) places the standby replicas; it must outlive the node.
  absl::Status Start(const std::string& endpoint, const MembershipSource* membership = nullptr);
  // Announces the node's departure, stops processing and closes the shards. Idempotent.
  void Stop();

  ShardRegistry& registry() { return registry_; }
  const ShardQueries& queries() const { return queries_; }
  // What the processor's committed batches did (for /metrics).
  BatchStats batch_stats() const { return processor_.batch_stats(); }

 private:
  const config::v1::Config& config_;
  ShardRegistry registry_;
  ShardFiles files_;
  ShardQueries queries_;
  StandbyReplicator standbys_;
  Processor processor_;
  std::unique_ptr<MembershipPublisher> membership_;
  std::thread thread_;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_NODE_H_
