#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/node/standby.h"

namespace tally::node {
namespace {

config::v1::Config Config(int partitions, int replicas) {
  config::v1::Config config;
  config::v1::Scenario* s = config.add_scenarios();
  s->set_name("demo");
  s->set_partitions(partitions);
  s->set_standby_replicas(replicas);
  config.add_scenarios()->set_name("none");  // no standbys asked
  config.mutable_scenarios(1)->set_partitions(partitions);
  return config;
}

// Per partition, the nodes that place a standby of it.
std::map<int32_t, std::set<std::string>> Placement(const config::v1::Config& config,
                                                   const ClusterMembership& membership) {
  std::map<int32_t, std::set<std::string>> out;
  for (const std::string& node : membership.alive) {
    for (const PartitionId& id : StandbysOf(node, config, membership)) {
      EXPECT_EQ(id.scenario, "demo");
      out[id.partition].insert(node);
    }
  }
  return out;
}

ClusterMembership Membership(int nodes, int partitions) {
  ClusterMembership m;
  for (int i = 0; i < nodes; ++i) m.alive.push_back(absl::StrCat("n", i));
  for (int p = 0; p < partitions; ++p) m.active[PartitionKey("demo", p)] = m.alive[p % nodes];
  return m;
}

TEST(StandbysOfTest, EveryPartitionGetsNStandbysNeverOnItsActiveNode) {
  const config::v1::Config config = Config(24, 2);
  const ClusterMembership m = Membership(5, 24);
  auto placement = Placement(config, m);
  ASSERT_EQ(placement.size(), 24u);
  for (const auto& [partition, nodes] : placement) {
    EXPECT_EQ(nodes.size(), 2u) << partition;
    EXPECT_FALSE(nodes.count(m.active.at(PartitionKey("demo", partition)))) << partition;
  }
}

TEST(StandbysOfTest, FewerOtherNodesThanReplicasPlacesOnAllOfThem) {
  auto placement = Placement(Config(4, 3), Membership(2, 4));
  for (const auto& [partition, nodes] : placement) EXPECT_EQ(nodes.size(), 1u) << partition;
  EXPECT_EQ(placement.size(), 4u);
}

TEST(StandbysOfTest, ANodeLeavingMovesOnlyTheStandbysItHeld) {
  const config::v1::Config config = Config(64, 1);
  ClusterMembership m = Membership(5, 64);
  auto before = Placement(config, m);
  // n4 leaves; the actives stay where they were (none was on n4's partitions' standbys' side).
  ClusterMembership after_m = m;
  after_m.alive.pop_back();
  for (auto& [key, node] : after_m.active) {
    if (node == "n4") node = "n0";
  }
  auto after = Placement(config, after_m);
  int moved = 0;
  for (const auto& [partition, nodes] : before) {
    const bool active_moved = m.active.at(PartitionKey("demo", partition)) == "n4";
    if (nodes.count("n4") || active_moved) continue;
    if (after[partition] != nodes) ++moved;
  }
  EXPECT_EQ(moved, 0);
}

TEST(StandbysOfTest, ANodeNotAliveAndScenariosWithoutStandbysPlaceNothing) {
  const ClusterMembership m = Membership(3, 8);
  EXPECT_TRUE(StandbysOf("stranger", Config(8, 1), m).empty());
  EXPECT_TRUE(StandbysOf("n0", Config(8, 0), m).empty());
}

TEST(StandbysOfTest, WithoutAKnownActiveEveryAliveNodeIsACandidate) {
  ClusterMembership m = Membership(3, 6);
  m.active.clear();
  auto placement = Placement(Config(6, 1), m);
  for (const auto& [partition, nodes] : placement) EXPECT_EQ(nodes.size(), 1u);
  EXPECT_EQ(placement.size(), 6u);
}

}  // namespace
}  // namespace tally::node
