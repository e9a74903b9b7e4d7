// Routers build their routing tables from <app>.members records, which any client of the topic
// could write.

#include <cstddef>
#include <cstdint>

#include "server/router/routing_table.h"
#include "tally/internal/v1/shard.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::internal::v1::MemberRecord record;
  if (!record.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::flat_hash_map<std::string, tally::internal::v1::MemberRecord> members;
  members[record.node_id()] = record;
  tally::router::RoutingTable table(1, members, record.heartbeat_ms(), nullptr,
                                    [](const std::string&, const std::string&) {
                                      return std::shared_ptr<tally::router::ShardClient>();
                                    });
  for (const auto& p : record.partitions()) {
    if (const auto* route = table.Find(p.scenario(), p.partition()); route != nullptr) {
      if (route->active.has_value()) (void)route->active->lag();
      for (const auto& standby : route->standbys) (void)standby.lag();
    }
  }
  return 0;
}
