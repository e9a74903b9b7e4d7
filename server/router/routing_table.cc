#include "server/router/routing_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::router {

std::string RoutingTable::Key(const std::string& scenario, int32_t partition) {
  return absl::StrCat(scenario, "/", partition);
}

RoutingTable::RoutingTable(
    uint64_t version, const absl::flat_hash_map<std::string, internal::v1::MemberRecord>& members,
    int64_t now_ms, const RoutingTable* previous, const ShardClientFactory& factory,
    const Resumption& resumption)
    : version_(version) {
  absl::flat_hash_map<std::string, std::shared_ptr<ShardClient>> old_clients;
  if (previous != nullptr) {
    for (const auto& node : previous->nodes_) {
      if (node->client != nullptr) {
        old_clients[absl::StrCat(node->member.node_id(), "@", node->member.endpoint())] =
            node->client;
      }
    }
  }
  // Liveness is judged against the freshest heartbeat heard from any node, not against this
  // router's clock alone: when every node falls silent at once, the likelier cause is that Kafka
  // (which carries the heartbeats) is unreachable, and the nodes still serve reads.
  int64_t judge_ms = 0;
  for (const auto& [id, record] : members) {
    judge_ms = std::max(judge_ms, std::clamp<int64_t>(record.heartbeat_ms(), 0, now_ms));
  }
  if (members.empty()) judge_ms = now_ms;
  for (const auto& [id, record] : members) {
    auto node = std::make_shared<NodeRoute>();
    node->member = record;
    node->member.clear_partitions();
    // Records come from a topic anyone with access can write: clamp before the arithmetic.
    const int64_t interval_ms =
        std::clamp<int64_t>(record.heartbeat_interval_ms(), 0, int64_t{3600} * 1000);
    const int64_t timeout_ms = std::max<int64_t>(3 * interval_ms, 3000);
    int64_t heartbeat_ms = std::clamp<int64_t>(record.heartbeat_ms(), 0, now_ms);
    if (resumption.nodes.contains(id)) {
      heartbeat_ms = std::max(heartbeat_ms, std::clamp<int64_t>(resumption.at_ms, 0, now_ms));
    }
    node->alive = !record.leaving() && judge_ms - heartbeat_ms <= timeout_ms;
    if (node->alive) {
      auto it = old_clients.find(absl::StrCat(id, "@", record.endpoint()));
      node->client = it != old_clients.end() ? it->second : factory(id, record.endpoint());
    }
    nodes_.push_back(node);
    if (!node->alive) continue;
    for (const internal::v1::PartitionState& p : record.partitions()) {
      PartitionRoute& route = partitions_[Key(p.scenario(), p.partition())];
      Copy copy{node, p};
      switch (p.role()) {
        case internal::v1::SHARD_ROLE_ACTIVE:
          if (!route.active.has_value() || route.active->state.since_ms() < p.since_ms()) {
            route.active = copy;
          }
          break;
        case internal::v1::SHARD_ROLE_STANDBY:
          route.standbys.push_back(copy);
          break;
        case internal::v1::SHARD_ROLE_RESTORING:
          route.restoring.push_back(copy);
          break;
        default:
          break;
      }
    }
  }
  std::sort(nodes_.begin(), nodes_.end(),
            [](const auto& a, const auto& b) { return a->member.node_id() < b->member.node_id(); });
  for (auto& [key, route] : partitions_) {
    std::sort(route.standbys.begin(), route.standbys.end(),
              [](const Copy& a, const Copy& b) { return a.lag() < b.lag(); });
  }
}

const PartitionRoute* RoutingTable::Find(const std::string& scenario, int32_t partition) const {
  auto it = partitions_.find(Key(scenario, partition));
  return it == partitions_.end() ? nullptr : &it->second;
}

}  // namespace tally::router
