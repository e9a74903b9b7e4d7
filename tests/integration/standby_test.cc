// Standby replicas and static membership, on real tallyd processes and a real broker (and the
// metrics that show the copies):
// - a standby is placed on the other node, catches up (lag 0), answers max_lag reads at once
//   when the active is SIGKILLed, and, promoted, replays nothing it already had;
// - a node SIGKILLed and restarted within the session timeout gets its partitions back without
//   a rebalance and restores nothing;
// - the processors' batch metrics count every report once.

#include <signal.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kafka/partitioner.h"
#include "server/node/processor.h"
#include "server/router/tokens.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/metrics_http.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

using ::testing::HasSubstr;

constexpr int kPartitions = 4;
constexpr int64_t kAnyLag = 1'000'000;

class StandbyTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) std::cout << cluster_->Logs() << std::endl;
  }

  // Reports a state for every key through `via` (one agent per key, so the key's state is the
  // last one reported); every report must be acknowledged. Records them in model_.
  void WriteAll(const std::string& via, int keys, std::mt19937& rng) {
    for (int i = 0; i < keys; ++i) {
      const std::string key = absl::StrCat("site-", i);
      const std::string state = absl::StrCat("s", rng() % 5);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::ReportStateResponse response;
      grpc::Status status =
          cluster_->state(via).ReportState(&context, ReportRequest(key, "agent-1", state), &response);
      ASSERT_TRUE(status.ok()) << key << ": " << status.error_message();
      model_[key] = state;
      tokens_[key] = response.token();
      auto token = router::ParseWriteToken(response.token(), "token");
      ASSERT_TRUE(token.ok()) << key << ": " << token.status();
      int64_t& applied = applied_[token->partition];
      applied = std::max(applied, token->offset + 1);
    }
  }

  // GetState of `key` through `via`.
  grpc::Status Read(const std::string& via, const std::string& key, int64_t max_lag,
                    const std::string& min_token, v1::GetStateResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_object_key(key);
    request.set_max_lag(max_lag);
    request.set_min_token(min_token);
    return cluster_->state(via).GetState(&context, request, response);
  }

  // Every key read through `via` has its model state; the first difference, or "".
  std::string CheckAll(const std::string& via, int64_t max_lag) {
    for (const auto& [key, state] : model_) {
      v1::GetStateResponse response;
      grpc::Status status = Read(via, key, max_lag, "", &response);
      if (!status.ok()) return absl::StrCat(key, ": ", status.error_message());
      if (response.state().state() != state) {
        return absl::StrCat(key, ": ", response.state().state(), " served by ",
                            response.served_by(), ", model ", state);
      }
    }
    return "";
  }

  std::unique_ptr<TestCluster> cluster_;
  std::map<std::string, std::string> model_;   // key → last acknowledged state
  std::map<std::string, std::string> tokens_;  // key → write token of that report
  // partition → the offset after its last acknowledged report (what a copy reflecting every
  // report has applied)
  std::map<int32_t, int64_t> applied_;
};

TEST_F(StandbyTest, StandbyAnswersLagBoundedReadsWhileTheActiveIsDownThenTakesOverWithItsData) {
  const uint32_t seed = std::random_device{}();
  std::cout << "seed " << seed << std::endl;
  std::mt19937 rng(seed);
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), kPartitions, "", "",
                                           "metrics_address: \"127.0.0.1:0\"",
                                           "standby_replicas: 1");
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->StartNode("n2").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n2", {"n1", "n2"})) << cluster_->Logs();
  WriteAll("n2", 200, rng);
  WriteAll("n1", 200, rng);  // every key twice: standbys apply overwrites, not only inserts
  ASSERT_TRUE(
      WaitFor([&] { return cluster_->StandbysCaughtUp("n2", applied_); }, absl::Seconds(60)))
      << cluster_->Describe("n2")->DebugString();
  EXPECT_EQ(CheckAll("n2", 0), "");

  std::set<int32_t> n1_partitions;
  auto before = cluster_->Describe("n2");
  ASSERT_TRUE(before.ok()) << before.status();
  for (const v1::PartitionInfo& p : before->partitions()) {
    if (p.active_node() == "n1") n1_partitions.insert(p.partition());
  }
  // The nodes' Prometheus metrics say the same: each copy's role, and its lag.
  std::map<std::string, std::string> metrics;
  for (const std::string node : {"n1", "n2"}) {
    metrics[node] = HttpGet(cluster_->process(node).Log(), "GET /metrics HTTP/1.0");
    EXPECT_TRUE(absl::StartsWith(metrics[node], "HTTP/1.0 200 OK")) << metrics[node];
    EXPECT_THAT(metrics[node], HasSubstr("# TYPE tally_shard_lag gauge"));
    EXPECT_TRUE(absl::StartsWith(HttpGet(cluster_->process(node).Log(), "GET / HTTP/1.0"),
                                 "HTTP/1.0 404"));
  }
  for (const v1::PartitionInfo& p : before->partitions()) {
    const std::string labels =
        absl::StrCat("{scenario=\"demo\",partition=\"", p.partition(), "\"");
    const std::string standby = p.active_node() == "n1" ? "n2" : "n1";
    EXPECT_THAT(metrics[p.active_node()],
                HasSubstr(absl::StrCat("tally_shard_role", labels, ",role=\"active\"} 1")));
    EXPECT_THAT(metrics[standby],
                HasSubstr(absl::StrCat("tally_shard_role", labels, ",role=\"standby\"} 1")));
    EXPECT_THAT(metrics[standby], HasSubstr(absl::StrCat("tally_shard_lag", labels, "} ")));
  }
  ASSERT_FALSE(n1_partitions.empty());
  // And the processors' batches: together they committed each of the 400 reports exactly once,
  // and timed every phase.
  double records = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        records = 0;
        for (const std::string node : {"n1", "n2"}) {
          metrics[node] = HttpGet(cluster_->process(node).Log(), "GET /metrics HTTP/1.0");
          records += MetricValue(metrics[node], "tally_batch_records_total");
        }
        return records >= 400;
      },
      absl::Seconds(30)))
      << records << "\n" << metrics["n1"];
  EXPECT_EQ(records, 400);
  for (const std::string node : {"n1", "n2"}) {
    EXPECT_GE(MetricValue(metrics[node], "tally_batches_total"), 1) << metrics[node];
    EXPECT_THAT(metrics[node], HasSubstr("# TYPE tally_batch_seconds_total counter"));
    for (const char* phase : node::kBatchPhaseNames) {
      EXPECT_THAT(metrics[node],
                  HasSubstr(absl::StrCat("tally_batch_seconds_total{phase=\"", phase, "\"} ")));
    }
  }

  // The active of n1's partitions dies. Lag-bounded reads go to n2's standbys at once: the
  // first read after the kill already succeeds, and so does every other.
  cluster_->process("n1").Signal(SIGKILL);
  const absl::Time killed = absl::Now();
  int failed = 0, from_standby = 0;
  for (const auto& [key, state] : model_) {
    v1::GetStateResponse response;
    grpc::Status status = Read("n2", key, kAnyLag, "", &response);
    if (!status.ok() || response.state().state() != state) {
      ++failed;
      ADD_FAILURE() << key << ": " << status.error_message() << " " << response.DebugString();
      continue;
    }
    if (n1_partitions.count(kafka::PartitionFor(key, kPartitions))) {
      EXPECT_EQ(response.served_by(), "n2") << key;
      ++from_standby;
    }
  }
  const absl::Duration all_read = absl::Now() - killed;
  std::cout << "after SIGKILL of the active: " << model_.size() << " max_lag reads, " << failed
            << " failed, " << from_standby << " served by the standby, in " << all_read
            << std::endl;
  EXPECT_EQ(failed, 0);
  EXPECT_GT(from_standby, 0);
  // All of them within the session timeout, i.e. before any fail-over of the group.
  EXPECT_LT(all_read, TestCluster::kSessionTimeout);
  // Listing with max_lag too: every key, standbys answering for the dead node's partitions.
  std::map<std::string, std::string> listed;
  std::string page_token;
  do {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_max_lag(kAnyLag);
    request.set_page_size(64);
    request.set_page_token(page_token);
    v1::ListStateResponse response;
    grpc::Status status = cluster_->state("n2").ListState(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_GE(response.lag(), 0);
    for (const v1::ObjectState& state : response.states()) {
      listed[state.object_key()] = state.state();
    }
    page_token = response.next_page_token();
  } while (!page_token.empty());
  EXPECT_EQ(listed, model_);

  // The group moves n1's partitions to n2, whose standbys were current: nothing to replay.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto cluster = cluster_->Describe("n2");
        if (!cluster.ok()) return false;
        for (const v1::PartitionInfo& p : cluster->partitions()) {
          if (p.status() != v1::ACTIVE || p.active_node() != "n2") return false;
        }
        return true;
      },
      absl::Seconds(60)))
      << cluster_->Logs();
  auto [restored, assigned] = cluster_->process("n2").SumLogField("partition assigned",
                                                                  "restored_records");
  EXPECT_EQ(assigned, kPartitions);
  EXPECT_EQ(restored, 0) << "a promoted standby replayed records it already had";
  EXPECT_EQ(CheckAll("n2", 0), "");

  // n1 comes back with its data dir; the partitions spread again and the states hold.
  ASSERT_TRUE(cluster_->Restart("n1").ok());
  WriteAll("n1", 50, rng);
  ASSERT_TRUE(
      WaitFor([&] { return cluster_->StandbysCaughtUp("n2", applied_); }, absl::Seconds(90)))
      << cluster_->Describe("n2")->DebugString();
  EXPECT_EQ(CheckAll("n1", 0), "");
  EXPECT_EQ(CheckAll("n2", kAnyLag), "");
}

TEST_F(StandbyTest, NodeRestartedWithinTheSessionTimeoutKeepsItsPartitionsAndRestoresNothing) {
  const uint32_t seed = std::random_device{}();
  std::cout << "seed " << seed << std::endl;
  std::mt19937 rng(seed);
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), kPartitions);
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->StartNode("n2").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n2", {"n1", "n2"})) << cluster_->Logs();
  WriteAll("n2", 100, rng);
  for (const auto& [key, token] : tokens_) {  // every report applied before the kill
    v1::GetStateResponse response;
    grpc::Status status = Read("n2", key, 0, token, &response);
    ASSERT_TRUE(status.ok()) << key << ": " << status.error_message();
  }
  std::map<int32_t, std::string> owners;
  auto before = cluster_->Describe("n2");
  ASSERT_TRUE(before.ok()) << before.status();
  for (const v1::PartitionInfo& p : before->partitions()) {
    owners[p.partition()] = p.active_node();
  }
  const int n2_assigned = cluster_->process("n2").SumLogField("partition assigned", "x").second;
  const int n2_revoked = cluster_->process("n2").SumLogField("partition revoked", "x").second;

  cluster_->process("n1").Signal(SIGKILL);
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(cluster_->Restart("n1").ok());
  // The same owners again, with n1's partitions restored from its own data dir.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto cluster = cluster_->Describe("n2");
        if (!cluster.ok()) return false;
        for (const v1::PartitionInfo& p : cluster->partitions()) {
          if (p.status() != v1::ACTIVE || owners[p.partition()] != p.active_node()) return false;
          if (p.active_node() == "n1" &&
              p.copies(0).since().seconds() < absl::ToUnixSeconds(killed) - 1) {
            return false;  // still the record of the killed process
          }
        }
        return true;
      },
      absl::Seconds(60)))
      << cluster_->Logs();
  const absl::Duration back = absl::Now() - killed;
  std::cout << "n1 serves its partitions again " << back << " after the SIGKILL" << std::endl;
  EXPECT_LT(back, TestCluster::kSessionTimeout) << "a rebalance waited for the session timeout";
  auto [restored, assigned] =
      cluster_->process("n1").SumLogField("partition assigned", "restored_records");
  int n1_owned = 0;
  for (const auto& [partition, owner] : owners) n1_owned += owner == "n1";
  EXPECT_EQ(assigned, n1_owned);
  EXPECT_EQ(restored, 0) << "the restarted node replayed its changelog";
  // n2 saw no rebalance: it neither lost nor gained a partition.
  EXPECT_EQ(cluster_->process("n2").SumLogField("partition revoked", "x").second, n2_revoked);
  EXPECT_EQ(cluster_->process("n2").SumLogField("partition assigned", "x").second, n2_assigned);
  EXPECT_EQ(CheckAll("n1", 0), "");
}

}  // namespace
}  // namespace tally::test
