#ifndef TALLY_SERVER_NODE_MEMBERSHIP_H_
#define TALLY_SERVER_NODE_MEMBERSHIP_H_

// MembershipPublisher announces a node to the routers: every heartbeat interval, and at once when
// the node's set of shards or their roles change, it writes a tally.internal.v1.MemberRecord
// (endpoint, partitions with role and offsets) to <app>.members, keyed by the node id. Routers
// tail that compacted topic to build their routing tables. On Stop() it writes a last record
// with leaving = true and no partitions, so routers stop sending reads at once.
//
// Records are sent by an idempotent producer (acks=all) without waiting for each delivery: a lost
// heartbeat is repaired by the next one. Start() and Stop() are called from one thread.

#include <atomic>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/kafka/config.h"
#include "server/node/shard_registry.h"
#include "tally/config/v1/config.pb.h"
#include "tally/internal/v1/shard.pb.h"

namespace tally::node {

class MembershipPublisher {
 public:
  // `config` and `registry` must outlive the publisher.
  MembershipPublisher(const config::v1::Config& config, const ShardRegistry& registry,
                      std::string endpoint);
  ~MembershipPublisher();

  // Creates the producer and starts publishing on a thread of its own.
  absl::Status Start();
  // Publishes the leaving record, flushes (bounded) and stops. Idempotent.
  void Stop();

  // The record describing this node now (for tests and for DescribeCluster on this node).
  internal::v1::MemberRecord Snapshot(bool leaving) const;

 private:
  void Run();
  void Publish(bool leaving);

  // Constant after construction.
  const config::v1::Config& config_;
  const ShardRegistry& registry_;
  const std::string endpoint_;
  const int64_t started_ms_;

  kafka::HandlePtr producer_;
  kafka::TopicPtr topic_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_MEMBERSHIP_H_
