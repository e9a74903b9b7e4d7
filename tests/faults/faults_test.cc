// The fault-injection suite (issue 7): a 3-node cluster with one standby replica per partition
// under continuous load — agents reporting, readers with and without max_lag, watchers — and an
// oracle of every acknowledged report. Each test injects one fault with real signals or a real
// broker restart, at randomised times (the seed is printed; TALLY_FAULTS_SEED replays it), and
// ends with the same checks and figures (FaultTest::StopAndVerify).

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/faults/fault_suite.h"
#include "tests/faults/private_broker.h"
#include "tests/faults/topic_audit.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

// The lines of `log` after its first `from` bytes that contain any of `needles`.
std::vector<std::string> LinesWith(const std::string& log, size_t from,
                                   const std::vector<std::string>& needles) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(log.substr(std::min(from, log.size())), '\n')) {
    for (const std::string& needle : needles) {
      if (line.find(needle) != absl::string_view::npos) {
        out.emplace_back(line);
        break;
      }
    }
  }
  return out;
}

class Faults : public FaultTest {
 protected:
  // Keeps the log of a process about to be replaced, for failure messages.
  void KeepLog(const std::string& id) {
    std::string log = cluster_->process(id).Log();
    absl::StrAppend(&extra_logs_, "---- ", id, " (before its restart) ----\n",
                    log.substr(log.size() > 4000 ? log.size() - 4000 : 0), "\n");
  }
};

TEST_F(Faults, SigkillOfTheNodeOwningTheMostPartitionsThenRestart) {
  ASSERT_NO_FATAL_FAILURE(StartClusterAndLoad(KafkaBootstrapOrDie()));
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  const std::string victim = BusiestNode();
  ASSERT_FALSE(victim.empty());
  std::cout << "SIGKILL " << victim << std::endl;
  const absl::Time fault = absl::Now();
  const int status = cluster_->process(victim).Signal(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  // Its partitions move once the session timeout expires.
  ASSERT_TRUE(WaitMovedAwayFrom(victim, absl::Seconds(60))) << ClusterReport();
  std::cout << "partitions moved after " << absl::Now() - fault << std::endl;
  RunLoadFor(RandomDuration(absl::ZeroDuration(), absl::Seconds(3)));
  KeepLog(victim);
  ASSERT_TRUE(cluster_->Restart(victim).ok());
  ASSERT_TRUE(WaitAllNodesActive()) << ClusterReport();
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  StopAndVerify("1: SIGKILL of the busiest node, restart", fault);
}

TEST_F(Faults, SigstopLongerThanTheSessionTimeoutFencesTheZombieOwner) {
  const std::string bootstrap = KafkaBootstrapOrDie();
  ASSERT_NO_FATAL_FAILURE(StartClusterAndLoad(bootstrap));
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  const std::string victim = BusiestNode();
  ASSERT_FALSE(victim.empty());
  TallydProcess& zombie = cluster_->process(victim);
  std::cout << "SIGSTOP " << victim << std::endl;
  const absl::Time fault = absl::Now();
  zombie.Signal(SIGSTOP);
  ASSERT_TRUE(WaitMovedAwayFrom(victim, absl::Seconds(60))) << ClusterReport();
  const absl::Duration moved = absl::Now() - fault;
  std::cout << "partitions moved after " << moved << std::endl;
  // The session expires a session timeout after the last heartbeat the broker got, which may
  // be up to a heartbeat interval (librdkafka's default, 3 s) before the SIGSTOP.
  EXPECT_GE(moved, TestCluster::kSessionTimeout - absl::Seconds(3))
      << "the partitions moved before the zombie's session could have expired";
  // Stops from about the session timeout to beyond the transaction timeout (10 s): a
  // transaction open at the SIGSTOP is then either still open at the SIGCONT or aborted by the
  // broker.
  RunLoadFor(RandomDuration(absl::ZeroDuration(), absl::Seconds(5)));
  const size_t log_at_cont = zombie.Log().size();
  const absl::Time cont = absl::Now();
  std::cout << "SIGCONT " << victim << " after " << cont - fault << std::endl;
  zombie.Signal(SIGCONT);

  // The zombie learns that it lost its partitions: its processor session ends or they are
  // revoked, and whatever it had in flight is aborted, not committed.
  const std::vector<std::string> evidence = {
      "partition revoked", "processor session ended", "aborting transaction", "abort",
      "TXNERR",            "FENCED",                  "fenced",               "ILLEGAL_GENERATION",
      "UNKNOWN_MEMBER_ID"};
  ASSERT_TRUE(WaitFor([&] { return !LinesWith(zombie.Log(), log_at_cont, evidence).empty(); },
                      absl::Seconds(60)))
      << "no sign in the zombie's log that it lost its partitions:\n"
      << zombie.Log().substr(log_at_cont);
  ASSERT_TRUE(WaitAllNodesActive()) << ClusterReport();
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  StopAndVerify("2: SIGSTOP beyond the session timeout, SIGCONT", fault);
  ASSERT_FALSE(HasFatalFailure());

  std::cout << "the zombie's log after SIGCONT:\n";
  for (const std::string& line : LinesWith(zombie.Log(), log_at_cont, evidence)) {
    std::cout << "  " << line << "\n";
  }
  // The proof from Kafka: the committed history of the changes and changelog topics is that of
  // one writer per partition — nothing the zombie wrote after its partitions moved is visible.
  auto audit = AuditTopics(bootstrap, cluster_->app(), TestCluster::kScenario, kPartitions,
                           final_versions_, fault);
  ASSERT_TRUE(audit.ok()) << audit.status();
  std::cout << "  committed change events " << audit->committed_changes
            << ", committed changelog records " << audit->committed_changelog
            << "\n  records never visible (aborted transactions, any writer) " << audit->aborted
            << ", of them " << audit->aborted_since << " produced after the SIGSTOP"
            << std::endl;
  EXPECT_THAT(audit->errors, ::testing::IsEmpty());
}

TEST_F(Faults, BrokerRestartUnderLoad) {
  PrivateBroker broker;  // never the shared broker: other tests use it
  auto bootstrap = broker.Start();
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  ASSERT_NO_FATAL_FAILURE(StartClusterAndLoad(*bootstrap));
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  std::cout << "stopping the broker" << std::endl;
  const absl::Time fault = absl::Now();
  ASSERT_TRUE(broker.Stop().ok());
  std::cout << "broker stopped after " << absl::Now() - fault << std::endl;
  RunLoadFor(RandomDuration(absl::ZeroDuration(), absl::Seconds(3)));
  auto again = broker.Start();
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(*again, *bootstrap) << "a restarted broker keeps its port";
  kafka_outage_ = absl::Now() - fault;
  std::cout << "broker serving again after " << kafka_outage_ << std::endl;
  ASSERT_TRUE(WaitAllNodesActive()) << ClusterReport() << broker.LogTail();
  std::cout << "all partitions active again after " << absl::Now() - fault << std::endl;
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  StopAndVerify("3: broker restart", fault);
  // Stop the clients and the cluster before the broker goes (members destroy after locals).
  readers_.reset();
  agents_.reset();
  watchers_.reset();
  if (HasFailure()) std::cout << ClusterReport() << broker.LogTail() << std::endl;
  cluster_.reset();
  extra_logs_.clear();
}

TEST_F(Faults, RouterSigkillWithWatchersAttachedTheyResume) {
  ASSERT_NO_FATAL_FAILURE(StartClusterAndLoad(KafkaBootstrapOrDie()));
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  const std::vector<int> resumes_before = watchers_->resumes();
  // Watcher 0 and agents 0 and 2 are on r1.
  std::cout << "SIGKILL r1" << std::endl;
  pool_.MarkDown("r1");
  const absl::Time fault = absl::Now();
  const int status = cluster_->process("r1").Signal(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  ASSERT_TRUE(WaitFor([&] { return watchers_->resumes()[0] > resumes_before[0]; },
                      absl::Seconds(30)))
      << "the watcher on r1 did not resume";
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(4)));
  KeepLog("r1");
  ASSERT_TRUE(cluster_->Restart("r1").ok());
  pool_.Set("r1", cluster_->process("r1").address());
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  StopAndVerify("4: router SIGKILL with watchers attached", fault);
}

TEST_F(Faults, RollingRestartOfAllNodes) {
  ASSERT_NO_FATAL_FAILURE(StartClusterAndLoad(KafkaBootstrapOrDie()));
  RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(3)));
  std::vector<std::string> order = {"n1", "n2", "n3"};
  std::shuffle(order.begin(), order.end(), rng_);
  std::vector<absl::Time> faults;
  for (const std::string& id : order) {
    std::cout << "restarting " << id << std::endl;
    faults.push_back(absl::Now());
    const int status = cluster_->process(id).Signal(SIGTERM);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << id << " did not stop cleanly on SIGTERM: " << status << "\n" << ClusterReport();
    RunLoadFor(RandomDuration(absl::ZeroDuration(), absl::Seconds(2)));
    KeepLog(id);
    ASSERT_TRUE(cluster_->Restart(id).ok());
    ASSERT_TRUE(WaitAllNodesActive()) << ClusterReport();
    RunLoadFor(RandomDuration(absl::Seconds(1), absl::Seconds(2)));
  }
  StopAndVerify("5: rolling restart of all nodes", faults);
}

}  // namespace
}  // namespace tally::test
