#include "server/router/routing_table.h"

#include <limits>

#include "gtest/gtest.h"

namespace tally::router {
namespace {

constexpr int64_t kNowMs = 1'700'000'000'000;

internal::v1::MemberRecord Member(const std::string& id, int64_t heartbeat_ms) {
  internal::v1::MemberRecord record;
  record.set_node_id(id);
  record.set_endpoint(id + ":7070");
  record.set_heartbeat_ms(heartbeat_ms);
  record.set_heartbeat_interval_ms(1000);
  return record;
}

void Hold(internal::v1::MemberRecord& record, int32_t partition, internal::v1::ShardRole role,
          int64_t since_ms, int64_t applied = 0, int64_t end = 0) {
  internal::v1::PartitionState* p = record.add_partitions();
  p->set_scenario("demo");
  p->set_partition(partition);
  p->set_role(role);
  p->set_since_ms(since_ms);
  p->set_applied_offset(applied);
  p->set_end_offset(end);
}

class NoClient final : public ShardClient {
 public:
  absl::StatusOr<internal::v1::ShardGetResponse> Get(const internal::v1::ShardGetRequest&,
                                                     absl::Time) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::StatusOr<internal::v1::ShardScanResponse> Scan(const internal::v1::ShardScanRequest&,
                                                       absl::Time) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::Status Snapshot(const internal::v1::ShardSnapshotRequest&, absl::Time,
                        const SnapshotEmit&) override {
    return absl::UnimplementedError("not in this test");
  }
};

ShardClientFactory NoClients() {
  return [](const std::string&, const std::string&) { return std::make_shared<NoClient>(); };
}

class RoutingTableTest : public ::testing::Test {
 protected:
  RoutingTable Build(const RoutingTable* previous = nullptr) {
    return RoutingTable(1, members_, kNowMs, previous,
                        [this](const std::string&, const std::string&) {
                          ++clients_made_;
                          return std::make_shared<NoClient>();
                        });
  }
  absl::flat_hash_map<std::string, internal::v1::MemberRecord> members_;
  int clients_made_ = 0;
};

TEST_F(RoutingTableTest, ActiveCopyOfAnAliveNodeRoutes) {
  members_["n1"] = Member("n1", kNowMs - 500);
  Hold(members_["n1"], 0, internal::v1::SHARD_ROLE_ACTIVE, 1, 5, 9);
  RoutingTable table = Build();
  const PartitionRoute* route = table.Find("demo", 0);
  ASSERT_NE(route, nullptr);
  ASSERT_TRUE(route->active.has_value());
  EXPECT_EQ(route->active->node->member.node_id(), "n1");
  EXPECT_EQ(route->active->lag(), 4);
  EXPECT_EQ(table.Find("demo", 1), nullptr);
}

TEST_F(RoutingTableTest, SilentOrLeavingNodesRouteNothingButAreListed) {
  members_["n1"] = Member("n1", kNowMs - 10'000);
  Hold(members_["n1"], 0, internal::v1::SHARD_ROLE_ACTIVE, 1);
  members_["n2"] = Member("n2", kNowMs);
  members_["n2"].set_leaving(true);
  Hold(members_["n2"], 1, internal::v1::SHARD_ROLE_ACTIVE, 1);
  RoutingTable table = Build();
  EXPECT_EQ(table.Find("demo", 0), nullptr);
  EXPECT_EQ(table.Find("demo", 1), nullptr);
  ASSERT_EQ(table.nodes().size(), 2u);
  EXPECT_FALSE(table.nodes()[0]->alive);
  EXPECT_FALSE(table.nodes()[1]->alive);
}

TEST_F(RoutingTableTest, NodesSilentTogetherStayAliveButOneFallingBehindTheOthersIsDead) {
  // Kafka unreachable: nobody's heartbeat arrives for 10 s; the nodes still serve.
  members_["n1"] = Member("n1", kNowMs - 10'000);
  Hold(members_["n1"], 0, internal::v1::SHARD_ROLE_ACTIVE, 1);
  members_["n2"] = Member("n2", kNowMs - 10'500);
  Hold(members_["n2"], 1, internal::v1::SHARD_ROLE_ACTIVE, 1);
  // n3 fell silent 5 s before the others: it died.
  members_["n3"] = Member("n3", kNowMs - 15'000);
  Hold(members_["n3"], 2, internal::v1::SHARD_ROLE_ACTIVE, 1);
  RoutingTable table = Build();
  ASSERT_NE(table.Find("demo", 0), nullptr);
  ASSERT_NE(table.Find("demo", 1), nullptr);
  EXPECT_EQ(table.Find("demo", 2), nullptr);
  ASSERT_EQ(table.nodes().size(), 3u);
  EXPECT_TRUE(table.nodes()[0]->alive);
  EXPECT_TRUE(table.nodes()[1]->alive);
  EXPECT_FALSE(table.nodes()[2]->alive);
}

TEST_F(RoutingTableTest, AfterASilenceNodesThatReconnectLaterStayAliveForATimeout) {
  // The view read nothing for 10 s (a broker restart); n1 reconnected first and its fresh
  // heartbeat arrived 1 s ago; n2 and n3 have not been heard since before the silence. n3 was
  // already dead then: only n1 and n2 were alive.
  members_["n1"] = Member("n1", kNowMs);
  Hold(members_["n1"], 0, internal::v1::SHARD_ROLE_ACTIVE, 1);
  members_["n2"] = Member("n2", kNowMs - 11'000);
  Hold(members_["n2"], 1, internal::v1::SHARD_ROLE_ACTIVE, 1);
  members_["n3"] = Member("n3", kNowMs - 20'000);
  Hold(members_["n3"], 2, internal::v1::SHARD_ROLE_ACTIVE, 1);
  Resumption resumption{.at_ms = kNowMs - 1'000, .nodes = {"n1", "n2"}};
  RoutingTable table(1, members_, kNowMs, nullptr, NoClients(), resumption);
  ASSERT_EQ(table.nodes().size(), 3u);
  EXPECT_TRUE(table.nodes()[1]->alive) << "n2 counts as heard from when the records resumed";
  ASSERT_NE(table.Find("demo", 1), nullptr);
  EXPECT_FALSE(table.nodes()[2]->alive) << "n3 was dead before the silence";

  // A timeout (3 s) after the resumption, a node still not heard from is dead.
  members_["n1"].set_heartbeat_ms(kNowMs + 2'500);
  RoutingTable judged(3, members_, kNowMs + 2'500, nullptr, NoClients(), resumption);
  EXPECT_FALSE(judged.nodes()[1]->alive);
  EXPECT_EQ(judged.Find("demo", 1), nullptr);
  // Without the resumption, n2 would have been dead at once.
  RoutingTable plain(4, members_, kNowMs, nullptr, NoClients());
  EXPECT_FALSE(plain.nodes()[1]->alive);
}

TEST_F(RoutingTableTest, HostileHeartbeatFieldsDoNotOverflow) {
  // Found by tests/fuzz/member_record_fuzz: 3 * interval overflowed.
  members_["n1"] = Member("n1", std::numeric_limits<int64_t>::min());
  members_["n1"].set_heartbeat_interval_ms(-4827858800541171713);
  Hold(members_["n1"], 0, internal::v1::SHARD_ROLE_ACTIVE, 1, std::numeric_limits<int64_t>::min(),
       std::numeric_limits<int64_t>::max());
  members_["n2"] = Member("n2", std::numeric_limits<int64_t>::max());
  members_["n2"].set_heartbeat_interval_ms(std::numeric_limits<int64_t>::max());
  Hold(members_["n2"], 1, internal::v1::SHARD_ROLE_ACTIVE, 1, 5, 3);
  RoutingTable table = Build();
  EXPECT_EQ(table.Find("demo", 0), nullptr) << "a heartbeat from the dawn of time is dead";
  ASSERT_NE(table.Find("demo", 1), nullptr);
  EXPECT_EQ(table.Find("demo", 1)->active->lag(), 0);
}

TEST_F(RoutingTableTest, TwoActiveClaimsTheLaterTakeoverWins) {
  members_["old"] = Member("old", kNowMs);
  Hold(members_["old"], 0, internal::v1::SHARD_ROLE_ACTIVE, /*since_ms=*/100);
  members_["new"] = Member("new", kNowMs);
  Hold(members_["new"], 0, internal::v1::SHARD_ROLE_ACTIVE, /*since_ms=*/200);
  RoutingTable table = Build();
  EXPECT_EQ(table.Find("demo", 0)->active->node->member.node_id(), "new");
}

TEST_F(RoutingTableTest, StandbysSortedByLagAndRestoringListed) {
  members_["a"] = Member("a", kNowMs);
  Hold(members_["a"], 0, internal::v1::SHARD_ROLE_STANDBY, 1, 10, 50);
  members_["b"] = Member("b", kNowMs);
  Hold(members_["b"], 0, internal::v1::SHARD_ROLE_STANDBY, 1, 45, 50);
  members_["c"] = Member("c", kNowMs);
  Hold(members_["c"], 0, internal::v1::SHARD_ROLE_RESTORING, 1);
  RoutingTable table = Build();
  const PartitionRoute* route = table.Find("demo", 0);
  ASSERT_NE(route, nullptr);
  EXPECT_FALSE(route->active.has_value());
  ASSERT_EQ(route->standbys.size(), 2u);
  EXPECT_EQ(route->standbys[0].node->member.node_id(), "b");
  ASSERT_EQ(route->restoring.size(), 1u);
}

TEST_F(RoutingTableTest, RebuildReusesClientsOfUnchangedEndpoints) {
  members_["n1"] = Member("n1", kNowMs);
  RoutingTable first = Build();
  EXPECT_EQ(clients_made_, 1);
  RoutingTable second = Build(&first);
  EXPECT_EQ(clients_made_, 1);
  members_["n1"].set_endpoint("elsewhere:1");
  RoutingTable third = Build(&second);
  EXPECT_EQ(clients_made_, 2);
}

}  // namespace
}  // namespace tally::router
