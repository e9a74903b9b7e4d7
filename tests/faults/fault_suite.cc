#include "tests/faults/fault_suite.h"

#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "server/kafka/partitioner.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

const std::vector<std::string> kNodes = {"n1", "n2", "n3"};

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// Every state through ListState, key → state.
absl::StatusOr<std::map<std::string, v1::ObjectState>> ListAll(v1::StateService::Stub& stub) {
  std::map<std::string, v1::ObjectState> out;
  std::string token;
  do {
    v1::ListStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_page_size(17);  // several pages: paging is part of what is checked
    request.set_page_token(token);
    grpc::ClientContext context;
    context.set_deadline(Deadline(absl::Seconds(30)));
    v1::ListStateResponse response;
    grpc::Status status = stub.ListState(&context, request, &response);
    if (!status.ok()) return absl::UnavailableError(status.error_message());
    for (const v1::ObjectState& s : response.states()) out[s.object_key()] = s;
    token = response.next_page_token();
  } while (!token.empty());
  return out;
}

std::map<std::string, std::string> Votes(const v1::ObjectState& state) {
  std::map<std::string, std::string> votes;
  for (const v1::Vote& v : state.votes()) votes[v.agent_id()] = v.state();
  return votes;
}

std::string Describe(const std::map<std::string, std::string>& votes) {
  return absl::StrJoin(votes, ",", absl::PairFormatter("="));
}

std::string Seconds(absl::Duration d) {
  return absl::StrCat(absl::ToDoubleMilliseconds(d) / 1000.0, " s");
}

}  // namespace

void FaultTest::SetUp() {
  const char* env = std::getenv("TALLY_FAULTS_SEED");
  if (env != nullptr && *env != '\0') {
    ASSERT_TRUE(absl::SimpleAtoi(env, &seed_)) << "TALLY_FAULTS_SEED=" << env;
  } else {
    seed_ = std::random_device{}();
  }
  std::cout << "seed: " << seed_ << " (replay with TALLY_FAULTS_SEED=" << seed_ << ")" << std::endl;
  rng_.seed(seed_);
  for (int i = 0; i < kKeys; ++i) keys_.push_back(absl::StrCat("k-", i));
}

void FaultTest::TearDown() {
  readers_.reset();
  agents_.reset();
  watchers_.reset();
  if (HasFailure() && cluster_ != nullptr) {
    std::cout << extra_logs_ << cluster_->Logs() << std::endl;
  }
}

void FaultTest::StartClusterAndLoad(const std::string& bootstrap) {
  cluster_ =
      std::make_unique<TestCluster>(bootstrap, kPartitions, "", "", "", "standby_replicas: 1");
  for (const std::string& id : kNodes) ASSERT_TRUE(cluster_->StartNode(id).ok()) << id;
  for (const std::string id : {"r1", "r2"}) {
    ASSERT_TRUE(cluster_->StartRouter(id).ok()) << id;
    pool_.Set(id, cluster_->process(id).address());
  }
  ASSERT_TRUE(WaitAllNodesActive(absl::Seconds(90))) << cluster_->Logs();

  watchers_ = std::make_unique<Watchers>(pool_, "k-", kWatchers);
  ASSERT_TRUE(WaitFor([&] { return watchers_->Registered(); }, absl::Seconds(30)));
  agents_ =
      std::make_unique<Agents>(pool_, oracle_, keys_, kAgents, rng_(), absl::Milliseconds(30));
  std::map<int, std::vector<std::string>> by_partition;
  for (const std::string& key : keys_) {
    by_partition[kafka::PartitionFor(key, kPartitions)].push_back(key);
  }
  ASSERT_EQ(by_partition.size(), static_cast<size_t>(kPartitions)) << "a partition without keys";
  readers_ = std::make_unique<Readers>(pool_, oracle_, by_partition, kMaxLag, rng_(),
                                       absl::Milliseconds(50));
  ASSERT_TRUE(WaitFor([&] { return agents_->InitialPassDone(); }, absl::Seconds(60)))
      << cluster_->Logs();
}

std::string FaultTest::BusiestNode() {
  auto cluster = cluster_->Describe("r2");
  if (!cluster.ok()) return "";
  std::map<std::string, int> owned;
  for (const v1::PartitionInfo& p : cluster->partitions()) ++owned[p.active_node()];
  std::string busiest;
  for (const std::string& id : kNodes) {
    if (busiest.empty() || owned[id] > owned[busiest]) busiest = id;
  }
  std::cout << "partitions per node:";
  for (const std::string& id : kNodes) std::cout << " " << id << "=" << owned[id];
  std::cout << std::endl;
  return busiest;
}

bool FaultTest::WaitMovedAwayFrom(const std::string& node, absl::Duration timeout) {
  return WaitFor(
      [&] {
        auto cluster = cluster_->Describe(pool_.Up("r2") ? "r2" : "r1");
        if (!cluster.ok() || cluster->partitions_size() != kPartitions) return false;
        for (const v1::PartitionInfo& p : cluster->partitions()) {
          if (p.status() != v1::ACTIVE || p.active_node() == node) return false;
        }
        return true;
      },
      timeout);
}

bool FaultTest::WaitAllNodesActive(absl::Duration timeout) {
  return cluster_->WaitAllActive(pool_.Up("r2") ? "r2" : "r1", {kNodes.begin(), kNodes.end()},
                                 timeout);
}

std::string FaultTest::ClusterReport() {
  std::string out = "DescribeCluster: ";
  auto cluster = cluster_->Describe(pool_.Up("r2") ? "r2" : "r1");
  if (!cluster.ok()) {
    absl::StrAppend(&out, cluster.status().ToString(), "\n");
  } else {
    for (const v1::NodeInfo& n : cluster->nodes()) {
      absl::StrAppend(&out, "\n  node ", n.id(), n.alive() ? " alive" : " dead");
    }
    for (const v1::PartitionInfo& p : cluster->partitions()) {
      absl::StrAppend(&out, "\n  partition ", p.partition(), " ",
                      v1::PartitionStatus_Name(p.status()), " on ", p.active_node(), " standbys [",
                      absl::StrJoin(p.standbys(), ","), "] lag ", p.lag());
    }
    absl::StrAppend(&out, "\n");
  }
  return absl::StrCat(out, extra_logs_, cluster_->Logs());
}

absl::Duration FaultTest::RandomDuration(absl::Duration min, absl::Duration max) {
  const int64_t span = absl::ToInt64Milliseconds(max - min);
  return min + absl::Milliseconds(static_cast<int64_t>(rng_() % (span + 1)));
}

void FaultTest::RunLoadFor(absl::Duration d) { absl::SleepFor(d); }

void FaultTest::StopAndVerify(const std::string& scenario, const std::vector<absl::Time>& faults) {
  // 1. Every agent's last report is acknowledged, so the oracle knows every vote.
  agents_->Stop(absl::Seconds(60));
  ASSERT_THAT(agents_->unacknowledged(), ::testing::IsEmpty())
      << "reports never acknowledged: their outcome is unknown";
  ASSERT_THAT(oracle_.errors(), ::testing::IsEmpty());
  const std::map<std::string, Oracle::Expected> expected = oracle_.ExpectedStates();
  ASSERT_EQ(expected.size(), keys_.size());
  for (const auto& [key, e] : expected) ASSERT_EQ(e.votes.size(), size_t{kAgents}) << key;

  // 2. Read-your-writes: the last acknowledged write of every partition is applied.
  RouterPool::Choice router = pool_.Pick(0);
  ASSERT_NE(router.stub, nullptr);
  const std::map<int32_t, Oracle::LastWrite> last_writes = oracle_.LastWrites();
  ASSERT_EQ(last_writes.size(), size_t{kPartitions}) << "a partition without a write";
  for (const auto& [partition, write] : last_writes) {
    v1::GetStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_object_key(write.key);
    request.set_min_token(write.token);
    grpc::ClientContext context;
    context.set_deadline(Deadline(absl::Seconds(60)));
    v1::GetStateResponse response;
    grpc::Status status = router.stub->GetState(&context, request, &response);
    ASSERT_TRUE(status.ok()) << "GetState(min_token=" << write.token
                             << "): " << status.error_message();
  }

  // 3. Final states, through GetState and ListState, equal the oracle's.
  auto listed = ListAll(*router.stub);
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::map<std::string, int64_t> final_versions;
  std::map<std::string, std::pair<std::string, int64_t>> final_states;
  for (const auto& [key, e] : expected) {
    v1::GetStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_object_key(key);
    grpc::ClientContext context;
    context.set_deadline(Deadline(absl::Seconds(30)));
    v1::GetStateResponse got;
    grpc::Status status = router.stub->GetState(&context, request, &got);
    ASSERT_TRUE(status.ok()) << key << ": " << status.error_message();
    EXPECT_EQ(got.state().state(), e.state) << key << " (GetState)";
    EXPECT_EQ(Votes(got.state()), e.votes)
        << key << ": GetState votes " << Describe(Votes(got.state())) << ", acknowledged "
        << Describe(e.votes);
    auto it = listed->find(key);
    ASSERT_NE(it, listed->end()) << key << " not listed";
    EXPECT_EQ(it->second.state(), e.state) << key << " (ListState)";
    EXPECT_EQ(Votes(it->second), e.votes) << key << " (ListState)";
    EXPECT_EQ(it->second.version(), got.state().version()) << key;
    final_versions[key] = got.state().version();
    final_states[key] = {got.state().state(), got.state().version()};
  }
  EXPECT_EQ(listed->size(), expected.size()) << "ListState lists objects no agent reported";
  final_versions_ = final_versions;

  // 4. Watchers: every version of every object, once, in order, ending at the final states.
  const bool reached =
      WaitFor([&] { return watchers_->Reached(final_versions); }, absl::Seconds(60));
  watchers_->Stop();
  EXPECT_TRUE(reached) << "a watcher did not receive every change";
  EXPECT_THAT(watchers_->errors(), ::testing::IsEmpty());
  for (const auto& states : watchers_->states()) {
    EXPECT_EQ(states, final_states) << "a watcher's states differ from the final states";
  }

  // 5. Reads, and the figures.
  readers_->Stop();
  EXPECT_THAT(readers_->stale_fresh_reads(), ::testing::IsEmpty())
      << "a fresh read (max_lag 0) returned an older version than an earlier one, or NOT_FOUND";
  const std::vector<Readers::Read> reads = readers_->reads();
  int64_t lagged = 0, lagged_failed = 0, fresh = 0, fresh_failed = 0;
  std::map<std::string, int> lagged_errors;
  std::map<int, absl::Time> last_ok;  // fresh reads, per partition
  absl::Duration longest_gap;
  int gap_partition = -1;
  for (const Readers::Read& r : reads) {  // in the order they completed, per partition
    if (!r.fresh) {
      ++lagged;
      if (!r.ok()) {
        ++lagged_failed;
        ++lagged_errors[absl::StrCat(r.code, ": ", r.message.substr(0, 80))];
      }
      continue;
    }
    ++fresh;
    if (!r.ok()) {
      ++fresh_failed;
      continue;
    }
    auto it = last_ok.find(r.partition);
    if (it != last_ok.end() && r.end - it->second > longest_gap) {
      longest_gap = r.end - it->second;
      gap_partition = r.partition;
    }
    last_ok[r.partition] = r.end;
  }
  std::map<std::string, int> served_by;  // max_lag reads that succeeded, by who answered
  for (const Readers::Read& r : reads) {
    if (!r.fresh && r.ok()) ++served_by[r.served_by.empty() ? "(none: NOT_FOUND)" : r.served_by];
  }
  // Failover: from a fault to the first successful fresh read of every partition whose fresh
  // reads failed after it (before the next fault), the longest over the faults.
  absl::Duration failover;
  for (size_t f = 0; f < faults.size(); ++f) {
    const absl::Time until = f + 1 < faults.size() ? faults[f + 1] : absl::InfiniteFuture();
    std::map<int, absl::Time> first_failure, recovered;
    for (const Readers::Read& r : reads) {
      if (!r.fresh) continue;
      if (!r.ok() && r.end >= faults[f] && r.end < until && !first_failure.count(r.partition)) {
        first_failure[r.partition] = r.end;
      } else if (r.ok() && first_failure.count(r.partition) && !recovered.count(r.partition) &&
                 r.start > first_failure[r.partition]) {
        recovered[r.partition] = r.end;
      }
    }
    for (const auto& [partition, t] : first_failure) {
      failover = std::max(failover, recovered.count(partition) ? recovered[partition] - faults[f]
                                                               : absl::InfiniteDuration());
    }
  }
  const absl::Duration gap_target =
      TestCluster::kSessionTimeout + kRestoreAllowance + kafka_outage_;
  int resumes = 0;
  for (int n : watchers_->resumes()) resumes += n;

  std::cout << "\n[ figures ] " << scenario << " (seed " << seed_ << ")\n"
            << "  acknowledged reports            " << oracle_.acknowledged() << " ("
            << agents_->retries() << " retried attempts)\n"
            << "  failed reads with max_lag       " << lagged_failed << " of " << lagged
            << "   (target 0)\n"
            << "  longest gap in fresh reads      " << Seconds(longest_gap) << " (partition "
            << gap_partition << ")   (target <= " << Seconds(gap_target)
            << " = session timeout + restore allowance"
            << (kafka_outage_ > absl::ZeroDuration()
                    ? absl::StrCat(" + Kafka outage ", Seconds(kafka_outage_))
                    : "")
            << ")\n"
            << "  failover time                   "
            << (failover == absl::InfiniteDuration() ? "not recovered" : Seconds(failover))
            << "   (fault to the first fresh read of every affected partition)\n"
            << "  failed fresh reads              " << fresh_failed << " of " << fresh << "\n"
            << "  max_lag reads served by         "
            << absl::StrJoin(served_by, " ", absl::PairFormatter("=")) << "\n"
            << "  watch resumes                   " << resumes << std::endl;
  for (const auto& [error, n] : lagged_errors) {
    std::cout << "  max_lag read failure x" << n << ": " << error << std::endl;
  }
  // When and where each failed: which partition, and when it started and ended after the first
  // fault, so the copies' roles then can be found in the nodes' logs.
  for (const Readers::Read& r : reads) {
    if (r.fresh || r.ok()) continue;
    const absl::Time origin = faults.empty() ? r.start : faults.front();
    std::cout << "    partition " << r.partition << ": started " << Seconds(r.start - origin)
              << " after the fault, failed " << Seconds(r.end - origin) << " after it" << std::endl;
  }
  EXPECT_EQ(lagged_failed, 0) << "reads with max_lag " << kMaxLag << " failed";
  EXPECT_LE(longest_gap, gap_target) << "fresh reads of partition " << gap_partition;
  EXPECT_GT(lagged, 0);
  EXPECT_GT(fresh, 0);
}

}  // namespace tally::test
