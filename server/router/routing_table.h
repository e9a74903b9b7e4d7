#ifndef TALLY_SERVER_ROUTER_ROUTING_TABLE_H_
#define TALLY_SERVER_ROUTER_ROUTING_TABLE_H_

// RoutingTable: which node holds which partition, built from the nodes' membership records
// (tally.internal.v1.MemberRecord on <app>.members). Immutable once built, so routers share one
// snapshot between threads without locking on the read path; a new record makes a new table.
//
// Rules:
// - a node is alive while it has not announced leaving and its last heartbeat is at most
//   max(3 heartbeat intervals, 3 s) older than the freshest heartbeat of any node (or than now,
//   if that is earlier): a node that falls silent while others go on is dead, but when all fall
//   silent together (Kafka, which carries the heartbeats, is unreachable) they stay alive and
//   keep serving reads — the price is that nodes that all die at once stay listed as alive, and
//   reads of them fail as unreachable;
// - after the view's tail of the members topic was silent (Kafka unreachable), the nodes that were
//   alive then count as heard from when records resume (`Resumption`): nodes reconnect to Kafka
//   one by one, and the first fresh heartbeat must not make the others look dead;
// - the active copy of a partition is the one an alive node claims; if two do (a move in
//   progress, one of them not yet heard from since), the one that took it later wins;
// - standbys and restoring copies of alive nodes are listed for lag-bounded reads and for
//   DescribeCluster.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "server/router/shard_client.h"
#include "tally/internal/v1/shard.pb.h"

namespace tally::router {

struct NodeRoute {
  internal::v1::MemberRecord member;  // the node's latest record, without partitions
  bool alive = false;
  std::shared_ptr<ShardClient> client;  // null for nodes that are not alive
};

struct Copy {
  std::shared_ptr<const NodeRoute> node;
  internal::v1::PartitionState state;
  // Saturating: the offsets come from a topic anyone with access can write.
  int64_t lag() const {
    const int64_t applied = std::max<int64_t>(0, state.applied_offset());
    return state.end_offset() > applied ? state.end_offset() - applied : 0;
  }
};

struct PartitionRoute {
  std::optional<Copy> active;
  std::vector<Copy> standbys;   // standby copies, least lag first
  std::vector<Copy> restoring;  // copies being restored (not readable yet)
};

// The view's tail of the members topic resumed at `at_ms` (router clock) after a silence; `nodes`
// were alive before it.
struct Resumption {
  int64_t at_ms = 0;
  absl::flat_hash_set<std::string> nodes;
};

// Makes (or reuses) the client for a node; called while a table is built.
using ShardClientFactory = std::function<std::shared_ptr<ShardClient>(const std::string& node_id,
                                                                      const std::string& endpoint)>;

class RoutingTable {
 public:
  // An empty table (no nodes known yet).
  RoutingTable() = default;
  // `previous` (may be null) lends its clients to nodes whose endpoint did not change, so
  // channels survive rebuilds.
  RoutingTable(uint64_t version,
               const absl::flat_hash_map<std::string, internal::v1::MemberRecord>& members,
               int64_t now_ms, const RoutingTable* previous, const ShardClientFactory& factory,
               const Resumption& resumption = {});

  // Grows by one with every table a view builds.
  uint64_t version() const { return version_; }
  // The route of a partition; null if no alive node holds any copy of it.
  const PartitionRoute* Find(const std::string& scenario, int32_t partition) const;
  // Every node ever heard from (dead ones too), by id.
  const std::vector<std::shared_ptr<const NodeRoute>>& nodes() const { return nodes_; }

 private:
  static std::string Key(const std::string& scenario, int32_t partition);

  uint64_t version_ = 0;
  std::vector<std::shared_ptr<const NodeRoute>> nodes_;
  absl::flat_hash_map<std::string, PartitionRoute> partitions_;
};

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_ROUTING_TABLE_H_
