// Standby replicas and static membership, on real tallyd processes and a real broker (and the
// metrics that show the copies):
// - a standby is placed on the other node, catches up (lag 0), answers max_lag reads at once
//   when the active is SIGKILLed, and, promoted, replays nothing it already had;
// - a node SIGKILLed and restarted within the session timeout gets its partitions back without
//   a rebalance and restores nothing;
// - the processors' batch metrics count every report once;
// - a node that takes over a partition it holds the only standby of keeps answering lag-bounded
//   reads from it while it waits for the previous owner's open transaction.

#include <librdkafka/rdkafka.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kafka/admin.h"
#include "server/kafka/config.h"
#include "server/kafka/partitioner.h"
#include "server/node/processor.h"
#include "server/router/tokens.h"
#include "tally/internal/v1/shard.pb.h"
#include "tally/records/v1/records.pb.h"
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
      grpc::Status status = cluster_->state(via).ReportState(
          &context, ReportRequest(key, "agent-1", state), &response);
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
  cluster_ =
      std::make_unique<TestCluster>(KafkaBootstrapOrDie(), kPartitions, "", "",
                                    "metrics_address: \"127.0.0.1:0\"", "standby_replicas: 1");
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
    EXPECT_TRUE(
        absl::StartsWith(HttpGet(cluster_->process(node).Log(), "GET / HTTP/1.0"), "HTTP/1.0 404"));
  }
  for (const v1::PartitionInfo& p : before->partitions()) {
    const std::string labels = absl::StrCat("{scenario=\"demo\",partition=\"", p.partition(), "\"");
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
      << records << "\n"
      << metrics["n1"];
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
  auto [restored, assigned] =
      cluster_->process("n2").SumLogField("partition assigned", "restored_records");
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

// The previous owner is a stand-in with a transaction left open (as a SIGSTOPped node can leave
// one): the new owner must wait for it before it restores, up to the transaction timeout. Its
// copy was the partition's only standby, so if it stopped answering lag-bounded reads for that
// wait, nothing would answer them (seen in the SIGSTOP fault scenario: reads failing for 7.7 s).
TEST_F(StandbyTest, NewOwnerKeepsAnsweringLagBoundedReadsWhileItWaitsForThePreviousOwner) {
  const std::string bootstrap = KafkaBootstrapOrDie();
  cluster_ = std::make_unique<TestCluster>(bootstrap, 1, "", "", "", "standby_replicas: 1");
  const std::string app = cluster_->app();
  auto topic = [&](const std::string& kind) {
    return absl::StrCat(app, ".", TestCluster::kScenario, ".", kind);
  };
  {
    auto admin = kafka::Admin::Create({{"bootstrap.servers", bootstrap}});
    ASSERT_TRUE(admin.ok()) << admin.status();
    const kafka::Properties compact{{"cleanup.policy", "compact"}};
    ASSERT_TRUE((*admin)
                    ->EnsureTopics(
                        {kafka::TopicSpec(topic("reports"), 1),
                         kafka::TopicSpec(topic("changes"), 1), kafka::TopicSpec(topic("dlq"), 1),
                         kafka::TopicSpec(topic("changelog"), 1, -1, compact),
                         kafka::TopicSpec(absl::StrCat(app, ".members"), 1, -1, compact)})
                    .ok());
  }
  auto new_handle = [&](rd_kafka_type_t type, const kafka::Properties& properties) {
    auto conf = kafka::BuildConf({{"bootstrap.servers", bootstrap}}, properties);
    EXPECT_TRUE(conf.ok()) << conf.status();
    auto handle = kafka::NewHandle(type, std::move(*conf));
    EXPECT_TRUE(handle.ok()) << handle.status();
    return std::move(*handle);
  };
  kafka::HandlePtr plain = new_handle(RD_KAFKA_PRODUCER, {{"enable.idempotence", "true"}});
  auto produce = [](rd_kafka_t* producer, const std::string& to, const std::string& key,
                    const std::string& value) {
    return rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(to.c_str()), RD_KAFKA_V_PARTITION(0),
                             RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  };
  // Two reports of site-1: a1 says attack (offset 0), a2 says calm (offset 1).
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (const auto& [agent, state] : {std::pair{"a1", "attack"}, std::pair{"a2", "calm"}}) {
    records::v1::ReportRecord report;
    report.set_kind(records::v1::REPORT_KIND_REPORT);
    report.set_scenario(TestCluster::kScenario);
    report.set_object_key("site-1");
    report.set_agent_id(agent);
    report.set_state(state);
    report.set_observed_at_ms(now_ms);
    report.set_ttl_ms(3'600'000);
    ASSERT_EQ(produce(plain.get(), topic("reports"), "site-1", report.SerializeAsString()),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ASSERT_EQ(rd_kafka_flush(plain.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  // The previous owner: a member of the nodes' group, which announces itself as the active of
  // the partition on the members topic (at an endpoint nobody answers on).
  kafka::HandlePtr consumer =
      new_handle(RD_KAFKA_CONSUMER, {{"group.id", app},
                                     {"partition.assignment.strategy", "cooperative-sticky"},
                                     {"isolation.level", "read_committed"},
                                     {"enable.auto.commit", "false"},
                                     {"session.timeout.ms", "6000"}});
  rd_kafka_poll_set_consumer(consumer.get());
  {
    kafka::PartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), topic("reports").c_str(),
                                      RD_KAFKA_PARTITION_UA);
    ASSERT_EQ(rd_kafka_subscribe(consumer.get(), topics.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  auto owns_the_partition = [&] {
    rd_kafka_topic_partition_list_t* assigned = nullptr;
    if (rd_kafka_assignment(consumer.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    kafka::PartitionListPtr owned(assigned);
    return owned->cnt == 1;
  };
  ASSERT_TRUE(WaitFor(
      [&] {
        kafka::MessagePtr ignored(rd_kafka_consumer_poll(consumer.get(), 100));
        return owns_the_partition();
      },
      absl::Seconds(60)))
      << "the previous owner got no partition";
  auto announce = [&](bool leaving) {
    internal::v1::MemberRecord member;
    member.set_node_id("previous");
    member.set_endpoint("127.0.0.1:1");
    member.set_heartbeat_ms(absl::ToUnixMillis(absl::Now()));
    member.set_heartbeat_interval_ms(200);
    member.set_started_ms(now_ms);
    member.set_leaving(leaving);
    internal::v1::PartitionState* state = member.add_partitions();
    state->set_scenario(TestCluster::kScenario);
    state->set_partition(0);
    state->set_role(internal::v1::SHARD_ROLE_ACTIVE);
    state->set_applied_offset(1);
    state->set_end_offset(2);
    state->set_since_ms(now_ms);
    produce(plain.get(), absl::StrCat(app, ".members"), "previous", member.SerializeAsString());
    rd_kafka_poll(plain.get(), 0);
  };
  std::atomic<bool> stop{false};
  std::thread heartbeats([&] {  // and the group's rebalances, served in poll
    while (!stop.load()) {
      announce(false);
      kafka::MessagePtr ignored(rd_kafka_consumer_poll(consumer.get(), 200));
    }
  });

  kafka::HandlePtr producer = new_handle(
      RD_KAFKA_PRODUCER,
      {{"transactional.id", absl::StrCat(app, "-previous")}, {"transaction.timeout.ms", "120000"}});
  ASSERT_EQ(rd_kafka_init_transactions(producer.get(), 30000), nullptr);
  // Writes what the processor writes for site-1 after `votes` (its changelog record, and a change
  // event when the state changed), with the consumed offset, in a transaction left open.
  auto process = [&](const std::vector<std::pair<std::string, std::string>>& votes,
                     int64_t next_offset, bool event) {
    EXPECT_EQ(rd_kafka_begin_transaction(producer.get()), nullptr);
    records::v1::ObjectRecord object;
    object.mutable_state()->set_state("attack");
    object.mutable_state()->set_version(1);
    object.mutable_state()->set_updated_at_ms(now_ms);
    for (const auto& [agent, state] : votes) {
      records::v1::Vote& vote = *object.add_votes();
      vote.set_agent_id(agent);
      vote.set_state(state);
      vote.set_observed_at_ms(now_ms);
      vote.set_expires_at_ms(now_ms + 3'600'000);
      (*object.mutable_state()->mutable_tally())[state] += 1;
    }
    object.set_source_offset(next_offset);
    object.set_changes_offset(1);
    if (event) {
      records::v1::ChangeEvent change;
      change.set_scenario(TestCluster::kScenario);
      change.set_object_key("site-1");
      change.set_new_state("attack");
      change.set_version(1);
      change.set_time_ms(now_ms);
      change.set_cause(records::v1::ChangeCause::CHANGE_CAUSE_REPORT);
      EXPECT_EQ(produce(producer.get(), topic("changes"), "site-1", change.SerializeAsString()),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    EXPECT_EQ(produce(producer.get(), topic("changelog"), "site-1", object.SerializeAsString()),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(rd_kafka_flush(producer.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    kafka::PartitionListPtr offsets(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(offsets.get(), topic("reports").c_str(), 0)->offset =
        next_offset;
    rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer.get());
    rd_kafka_error_t* error =
        rd_kafka_send_offsets_to_transaction(producer.get(), offsets.get(), group, 30000);
    rd_kafka_consumer_group_metadata_destroy(group);
    EXPECT_EQ(error, nullptr) << rd_kafka_error_string(error);
  };
  process({{"a1", "attack"}}, 1, /*event=*/true);
  ASSERT_EQ(rd_kafka_commit_transaction(producer.get(), 30000), nullptr);

  // n2 joins: the partition stays with its owner (sticky), and n2 holds its only standby.
  ASSERT_TRUE(cluster_->StartNode("n2").ok());
  auto lagged_read = [&](v1::GetStateResponse* response) {
    return Read("n2", "site-1", kAnyLag, "", response);
  };
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::GetStateResponse response;
        return lagged_read(&response).ok() && response.served_by() == "n2";
      },
      absl::Seconds(60)))
      << "n2's standby never answered\n"
      << cluster_->Logs();
  ASSERT_TRUE(owns_the_partition()) << "the partition moved to n2 before the test let it";

  // The previous owner processes a2's report, and goes away with that transaction open.
  process({{"a1", "attack"}, {"a2", "calm"}}, 2, /*event=*/false);
  stop.store(true);
  heartbeats.join();
  rd_kafka_consumer_close(consumer.get());
  consumer.reset();
  announce(/*leaving=*/true);
  ASSERT_EQ(rd_kafka_flush(plain.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  TallydProcess& n2 = cluster_->process("n2");
  auto logged = [&](const std::string& msg) {
    return absl::StrContains(n2.Log(), absl::StrCat("msg=\"", msg, "\" scenario=demo partition=0"));
  };
  ASSERT_TRUE(WaitFor([&] { return logged("partition taken"); }, absl::Seconds(60)))
      << cluster_->Logs();

  // n2 waits for the open transaction, and meanwhile its copy answers lag-bounded reads: the
  // state the previous owner committed, from n2.
  for (int i = 0; i < 10; ++i) {
    v1::GetStateResponse response;
    grpc::Status status = lagged_read(&response);
    ASSERT_TRUE(status.ok()) << "read " << i << " while n2 waits: " << status.error_message();
    EXPECT_EQ(response.served_by(), "n2");
    EXPECT_EQ(response.state().state(), "attack");
    EXPECT_EQ(response.state().votes_size(), 1) << "the open transaction's record is not read";
  }
  EXPECT_FALSE(logged("partition assigned"))
      << "n2 restored while the previous owner's transaction was open";
  auto described = cluster_->Describe("n2");
  ASSERT_TRUE(described.ok()) << described.status();
  ASSERT_EQ(described->partitions_size(), 1);
  EXPECT_EQ(described->partitions(0).status(), v1::STANDBY) << described->DebugString();

  // The transaction ends (aborted); n2 restores, takes over and applies a2's report itself.
  ASSERT_EQ(rd_kafka_abort_transaction(producer.get(), 30000), nullptr);
  ASSERT_TRUE(WaitFor([&] { return logged("partition assigned"); }, absl::Seconds(60)))
      << cluster_->Logs();
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::GetStateResponse response;
        return Read("n2", "site-1", 0, "", &response).ok() && response.state().votes_size() == 2 &&
               response.served_by() == "n2";
      },
      absl::Seconds(60)))
      << cluster_->Logs();
}

}  // namespace
}  // namespace tally::test
