#ifndef TALLY_TESTS_FAULTS_FAULT_SUITE_H_
#define TALLY_TESTS_FAULTS_FAULT_SUITE_H_

// The fixture of the fault suite: a cluster of three nodes (n1..n3, node and router roles, one
// standby replica per partition) and two router-only processes (r1, r2) that every client talks
// to, agents reporting continuously, readers with and without max_lag, watchers, and an oracle
// of every acknowledged report. A test starts it, injects its fault, and ends with
// StopAndVerify(), which checks the cluster against the oracle and prints the figures.

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/faults/oracle.h"
#include "tests/faults/router_pool.h"
#include "tests/faults/workload.h"
#include "tests/integration/cluster.h"

namespace tally::test {

class FaultTest : public ::testing::Test {
 protected:
  static constexpr int kPartitions = 4;
  static constexpr int kKeys = 40;
  static constexpr int kAgents = 3;  // odd, two values: every object has a strict majority
  static constexpr int kWatchers = 2;
  static constexpr int64_t kMaxLag = 1000;
  // What a restore may take on top of the session timeout before the fresh-read gap misses
  // its target (the shards hold kKeys objects: the time is the rebalance's, not the copying's).
  static constexpr absl::Duration kRestoreAllowance = absl::Seconds(10);

  void SetUp() override;
  void TearDown() override;

  // Starts the cluster on `bootstrap`, then the watchers, agents and readers; returns once every
  // partition is active, the watchers are registered and every agent has voted on every key.
  void StartClusterAndLoad(const std::string& bootstrap);
  // The node that owns the most partitions.
  std::string BusiestNode();
  // Waits until every partition is active on a node other than `node`.
  bool WaitMovedAwayFrom(const std::string& node, absl::Duration timeout);
  // Waits until every partition is active and each of n1..n3 owns one.
  bool WaitAllNodesActive(absl::Duration timeout = absl::Seconds(60));
  // The cluster as DescribeCluster shows it (partitions: owner, status, standbys, lag), plus every
  // process's log, for failure messages.
  std::string ClusterReport();
  // A random duration in [min, max], from the test's seed.
  absl::Duration RandomDuration(absl::Duration min, absl::Duration max);
  // Lets the load run for `d` (pacing the schedule of faults, not a synchronisation).
  void RunLoadFor(absl::Duration d);

  // Stops the load and checks: every report acknowledged and reflected, final states (GetState
  // and ListState) equal to the oracle's, watchers without gaps or duplicates that end at the
  // final states, no fresh read older than an earlier one; prints the figures of the scenario
  // (fault injected at `fault`) and checks them against their targets.
  // With several faults (e.g. restarts one after another), the failover time is the longest of
  // theirs.
  void StopAndVerify(const std::string& scenario, absl::Time fault) {
    StopAndVerify(scenario, std::vector<absl::Time>{fault});
  }
  void StopAndVerify(const std::string& scenario, const std::vector<absl::Time>& faults);

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  // Declared before the clients, so the clients stop before the processes do.
  std::unique_ptr<TestCluster> cluster_;
  RouterPool pool_;
  Oracle oracle_;
  std::unique_ptr<Watchers> watchers_;
  std::unique_ptr<Agents> agents_;
  std::unique_ptr<Readers> readers_;
  std::vector<std::string> keys_;
  std::map<std::string, int64_t> final_versions_;  // by StopAndVerify: key → final version
  std::string extra_logs_;  // printed on failure (e.g. the logs of a process since replaced)
  // How long Kafka itself could not be reached: no node can prove it still owns a partition then,
  // so fresh reads stop once sessions time out; the gap target allows for it.
  absl::Duration kafka_outage_ = absl::ZeroDuration();
};

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_FAULT_SUITE_H_
