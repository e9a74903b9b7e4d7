// tally::Client and the tallyctl binary against a real cluster (test::TestCluster): two tallyd
// processes with the node and router roles, and router-only ones that the failover tests start
// and kill, on the real Kafka broker. One cluster serves every test of the suite (each test uses
// its own keys), because starting one costs seconds.
//
// Client::Watch's reconnection paths (each way a stream can end) are tested against fake routers
// in client_unit_test.cc; here a watch resumes from a token the caller kept, and across a router
// SIGKILLed mid-stream.

#include "client/client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/kafka/partitioner.h"
#include "tests/integration/cluster.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace tally {
namespace {

using test::TallydProcess;
using test::TestCluster;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kPartitions = 6;
constexpr const char* kScenario = TestCluster::kScenario;

// An address where nothing listens: a port the kernel handed out and that was closed again.
std::string DeadAddress() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
}

// n1, n2: nodes (and routers); router-only processes are started by the tests that kill them.
TestCluster* cluster = nullptr;

// n1's and n2's addresses.
std::vector<std::string> Routers() {
  return {cluster->process("n1").address(), cluster->process("n2").address()};
}

class ClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete cluster;
    cluster = nullptr;
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

class ClientClusterTest : public ::testing::Test {
 protected:
  // Starts the cluster for the first test of the binary; it serves every later one and stops
  // when the binary ends (ClusterEnvironment).
  static void SetUpTestSuite() {
    if (cluster != nullptr) return;
    cluster = new TestCluster(test::KafkaBootstrapOrDie(), kPartitions);
    for (const std::string id : {"n1", "n2"}) {
      absl::Status s = cluster->StartNode(id);
      ASSERT_TRUE(s.ok()) << s;
    }
    // Settled once both nodes own a share and every partition is active.
    ASSERT_TRUE(cluster->WaitAllActive("n1", {"n1", "n2"})) << "partitions not all active";
  }

  void TearDown() override {
    if (HasFailure()) std::cout << cluster->Logs() << std::endl;
  }

  // A client of n1 and n2 whose backoff waits are recorded, not slept.
  std::unique_ptr<Client> MakeClient(std::vector<std::string> routers = {}) {
    if (routers.empty()) routers = Routers();
    ClientOptions options;
    options.default_timeout = absl::Seconds(30);
    options.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
    auto client = Client::Create(std::move(routers), std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  // A key no other test uses.
  std::string Key(const std::string& name) {
    return absl::StrCat(::testing::UnitTest::GetInstance()->current_test_info()->name(), "/", name);
  }

  std::vector<absl::Duration> sleeps_;
};

TEST_F(ClientClusterTest, ReportThenGetWithItsTokenReadsTheWriteOnEveryPartition) {
  auto client = MakeClient();
  std::set<std::string> served_by;
  for (int i = 0; i < 24; ++i) {
    const std::string key = Key(absl::StrCat("site-", i));
    absl::StatusOr<std::string> first = client->Report(kScenario, key, "a1", "attack");
    ASSERT_TRUE(first.ok()) << first.status();
    absl::StatusOr<std::string> token = client->Report(kScenario, key, "a2", "attack");
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_THAT(*token, StartsWith("w1."));
    absl::StatusOr<v1::GetStateResponse> got = client->Get(kScenario, key, {.min_token = *token});
    ASSERT_TRUE(got.ok()) << key << ": " << got.status();
    EXPECT_EQ(got->state().object_key(), key);
    EXPECT_EQ(got->state().state(), "attack");
    EXPECT_EQ(got->state().votes_size(), 2);
    served_by.insert(got->served_by());
  }
  // Both nodes answered: reads went through a router to the partition's owner.
  EXPECT_EQ(served_by, (std::set<std::string>{"n1", "n2"}));
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(ClientClusterTest, RouterAnswersComeBackWithTheirCodesUnretried) {
  auto client = MakeClient();
  absl::StatusOr<v1::GetStateResponse> got = client->Get(kScenario, Key("never"));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("has no state"));
  got = client->Get("no-such-scenario", "k");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<std::string> token = client->Report(kScenario, "", "a1", "s");
  EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(token.status().message(), HasSubstr("object_key: must not be empty"));
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(ClientClusterTest, ReportBatchTokensReadTheirWritesAndABadReportWritesNothing) {
  auto client = MakeClient();
  v1::ReportBatchRequest batch;
  for (int i = 0; i < 12; ++i) {  // over every partition, likely; order is what counts
    v1::ReportStateRequest* report = batch.add_reports();
    report->set_scenario(kScenario);
    report->set_object_key(Key(absl::StrCat("site-", i)));
    report->set_agent_id("a1");
    report->set_state(absl::StrCat("s", i));
  }
  absl::StatusOr<std::vector<std::string>> tokens = client->ReportBatch(batch);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 12u);
  for (int i = 0; i < 12; ++i) {
    absl::StatusOr<v1::GetStateResponse> got =
        client->Get(kScenario, Key(absl::StrCat("site-", i)), {.min_token = (*tokens)[i]});
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    EXPECT_EQ(got->state().state(), absl::StrCat("s", i));
  }

  // A bad report refuses the batch, naming it, and the good one before it is not written either.
  v1::ReportBatchRequest bad;
  v1::ReportStateRequest* good = bad.add_reports();
  good->set_scenario(kScenario);
  good->set_object_key(Key("untouched"));
  good->set_agent_id("a1");
  good->set_state("up");
  *bad.add_reports() = *good;
  bad.mutable_reports(1)->clear_state();
  tokens = client->ReportBatch(bad);
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokens.status().message(), HasSubstr("reports[1].state: must not be empty"));
  // A later write of the same object (same partition) is applied after anything written before.
  absl::StatusOr<std::string> later = client->Report(kScenario, Key("untouched"), "a2", "down");
  ASSERT_TRUE(later.ok()) << later.status();
  absl::StatusOr<v1::GetStateResponse> got =
      client->Get(kScenario, Key("untouched"), {.min_token = *later});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->state().votes_size(), 1);
  EXPECT_EQ(got->state().votes(0).agent_id(), "a2");
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(ClientClusterTest, ListWalksEveryPageInKeyOrder) {
  auto client = MakeClient();
  std::vector<std::string> keys;
  for (int i = 0; i < 23; ++i) {
    const std::string key = Key(absl::StrCat("obj-", 100 + i));
    absl::StatusOr<std::string> token = client->Report(kScenario, key, "a1", "ok");
    ASSERT_TRUE(token.ok()) << token.status();
    ASSERT_TRUE(client->Get(kScenario, key, {.min_token = *token}).ok());
    keys.push_back(key);
  }
  StateList list = client->List(kScenario, Key("obj-"), {.page_size = 4});
  std::vector<std::string> listed;
  for (const v1::ObjectState& state : list) listed.push_back(state.object_key());
  ASSERT_TRUE(list.status().ok()) << list.status();
  EXPECT_EQ(listed, keys);
  EXPECT_GE(list.pages_fetched(), 6);
  EXPECT_EQ(list.next_page_token(), "");

  StateList none = client->List(kScenario, Key("nothing/"));
  EXPECT_TRUE(none.begin() == none.end());
  EXPECT_TRUE(none.status().ok());
  StateList unknown = client->List("no-such-scenario");
  EXPECT_TRUE(unknown.begin() == unknown.end());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientClusterTest, SetPinsUntilUnpinnedAndPurgeRemoves) {
  auto client = MakeClient();
  const std::string key = Key("site");
  ASSERT_TRUE(client->Report(kScenario, key, "a1", "ok").ok());
  v1::SetStateRequest set;
  set.set_scenario(kScenario);
  set.set_object_key(key);
  set.set_state("attack");
  set.set_pin(true);
  set.set_reason("incident 7");
  absl::StatusOr<std::string> token = client->Set(set);
  ASSERT_TRUE(token.ok()) << token.status();
  absl::StatusOr<v1::GetStateResponse> got = client->Get(kScenario, key, {.min_token = *token});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state().state(), "attack");
  EXPECT_TRUE(got->state().pinned());

  set.clear_state();
  set.set_pin(false);
  token = client->Set(set);
  ASSERT_TRUE(token.ok()) << token.status();
  got = client->Get(kScenario, key, {.min_token = *token});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state().state(), "ok");
  EXPECT_FALSE(got->state().pinned());

  token = client->Purge(kScenario, key, "cleanup");
  ASSERT_TRUE(token.ok()) << token.status();
  got = client->Get(kScenario, key, {.min_token = *token});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientClusterTest, DescribeShowsTheNodesAndEveryPartitionActive) {
  auto client = MakeClient();
  absl::StatusOr<v1::DescribeClusterResponse> described = client->Describe();
  ASSERT_TRUE(described.ok()) << described.status();
  std::set<std::string> nodes;
  for (const v1::NodeInfo& n : described->nodes()) {
    if (n.alive()) nodes.insert(n.id());
  }
  EXPECT_TRUE(nodes.count("n1") && nodes.count("n2"));
  ASSERT_EQ(described->partitions_size(), kPartitions);
  for (const v1::PartitionInfo& p : described->partitions()) {
    EXPECT_EQ(p.scenario(), kScenario);
    EXPECT_EQ(p.status(), v1::ACTIVE);
    EXPECT_TRUE(p.active_node() == "n1" || p.active_node() == "n2") << p.DebugString();
  }
}

TEST_F(ClientClusterTest, ADeadFirstRouterIsSkippedForTheNext) {
  auto client = MakeClient({DeadAddress(), Routers()[0]});
  const std::string key = Key("k");
  absl::StatusOr<std::string> token = client->Report(kScenario, key, "a1", "attack");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(sleeps_.size(), 1u);  // one backoff, then the second router answered
  absl::StatusOr<v1::GetStateResponse> got = client->Get(kScenario, key, {.min_token = *token});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state().state(), "attack");
  EXPECT_EQ(sleeps_.size(), 1u);  // the client stuck to the router that answered

  auto dead = MakeClient({DeadAddress(), DeadAddress()});
  absl::StatusOr<v1::DescribeClusterResponse> described = dead->Describe();
  EXPECT_EQ(described.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(described.status().message(), HasSubstr("no router answered (5 attempts)"));
}

TEST_F(ClientClusterTest, ARouterThatGoesDownIsSkippedForTheNext) {
  // A router-only process, first in the list; it serves until it is killed.
  absl::Status started = cluster->StartRouter("r1");
  ASSERT_TRUE(started.ok()) << started;
  TallydProcess& router = cluster->process("r1");
  auto client = MakeClient({router.address(), Routers()[1]});
  const std::string key = Key("k");
  // The router-only process needs the membership to route; reads succeed once it has it.
  absl::StatusOr<std::string> token = client->Report(kScenario, key, "a1", "attack");
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_TRUE(client->Get(kScenario, key, {.min_token = *token}).ok());
  EXPECT_TRUE(sleeps_.empty());  // r1 answered

  router.Signal(SIGKILL);
  token = client->Report(kScenario, key, "a2", "attack");
  ASSERT_TRUE(token.ok()) << token.status();
  absl::StatusOr<v1::GetStateResponse> got = client->Get(kScenario, key, {.min_token = *token});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state().votes_size(), 2);
  EXPECT_EQ(sleeps_.size(), 1u);  // one retry, then it stayed with n2
}

// Reports `state` for `key` and waits until it is applied.
void ReportApplied(Client& client, const std::string& key, const std::string& agent,
                   const std::string& state) {
  absl::StatusOr<std::string> token = client.Report(kScenario, key, agent, state);
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_TRUE(client.Get(kScenario, key, {.min_token = *token}).ok());
}

// The next event that is not progress, or the error.
absl::StatusOr<v1::WatchStateResponse> NextEvent(WatchStream& stream) {
  for (;;) {
    absl::StatusOr<v1::WatchStateResponse> event = stream.Next();
    if (!event.ok() || !event->has_progress()) return event;
  }
}

TEST_F(ClientClusterTest, WatchListsThenFollowsChangesAndResumesFromAToken) {
  auto client = MakeClient();
  const std::string prefix = Key("w/");
  for (const char* name : {"a", "b", "c"}) ReportApplied(*client, prefix + name, "a1", "ok");
  ReportApplied(*client, Key("outside"), "a1", "ok");

  auto stream = client->Watch(kScenario, WatchTarget::Prefix(prefix),
                              {.send_initial = true, .timeout = absl::Seconds(60)});
  std::set<std::string> initial;
  for (;;) {
    absl::StatusOr<v1::WatchStateResponse> event = NextEvent(*stream);
    ASSERT_TRUE(event.ok()) << event.status();
    if (event->has_snapshot_done()) break;
    ASSERT_TRUE(event->has_initial()) << event->DebugString();
    initial.insert(event->initial().object_key());
    EXPECT_EQ(event->initial().state(), "ok");
  }
  EXPECT_EQ(initial, (std::set<std::string>{prefix + "a", prefix + "b", prefix + "c"}));

  // A vote that changes b's majority: one change event.
  ReportApplied(*client, prefix + "b", "a2", "attack");
  ReportApplied(*client, prefix + "b", "a3", "attack");
  absl::StatusOr<v1::WatchStateResponse> change = NextEvent(*stream);
  ASSERT_TRUE(change.ok()) << change.status();
  ASSERT_TRUE(change->has_change()) << change->DebugString();
  EXPECT_EQ(change->change().object_key(), prefix + "b");
  EXPECT_EQ(change->change().old_state(), "ok");
  EXPECT_EQ(change->change().new_state(), "attack");
  EXPECT_EQ(change->change().cause(), v1::REPORT);
  const std::string token = stream->resume_token();
  EXPECT_FALSE(token.empty());
  stream->Cancel();
  EXPECT_EQ(stream->Next().status().code(), absl::StatusCode::kCancelled);

  // Changes while nobody watches are delivered to a watch resumed from the token, once each.
  absl::StatusOr<std::string> purged = client->Purge(kScenario, prefix + "a");
  ASSERT_TRUE(purged.ok()) << purged.status();
  ASSERT_TRUE(client
                  ->Set([&] {
                    v1::SetStateRequest set;
                    set.set_scenario(kScenario);
                    set.set_object_key(prefix + "c");
                    set.set_state("attack");
                    set.set_pin(true);
                    return set;
                  }())
                  .ok());
  auto resumed = client->Watch(kScenario, WatchTarget::Prefix(prefix),
                               {.resume_token = token, .timeout = absl::Seconds(60)});
  std::map<std::string, v1::ChangeCause> causes;
  while (causes.size() < 2) {
    absl::StatusOr<v1::WatchStateResponse> event = NextEvent(*resumed);
    ASSERT_TRUE(event.ok()) << event.status();
    ASSERT_TRUE(event->has_change()) << event->DebugString();
    EXPECT_FALSE(causes.count(event->change().object_key()))
        << "duplicate " << event->DebugString();
    causes[event->change().object_key()] = event->change().cause();
  }
  EXPECT_EQ(causes[prefix + "a"], v1::PURGE);
  EXPECT_EQ(causes[prefix + "c"], v1::SET);
}

TEST_F(ClientClusterTest, WatchSurvivesARouterKilledMidStreamWithoutLosingOrRepeatingAnEvent) {
  // A router-only process first in the list: the watch starts there and must move to n1.
  absl::Status started = cluster->StartRouter("r2");
  ASSERT_TRUE(started.ok()) << started;
  TallydProcess& router = cluster->process("r2");
  ClientOptions options;
  options.default_timeout = absl::Seconds(30);
  auto created = Client::Create({router.address(), Routers()[0]}, std::move(options));
  ASSERT_TRUE(created.ok()) << created.status();
  Client& client = **created;
  const std::string prefix = Key("k/");
  auto stream =
      client.Watch(kScenario, WatchTarget::Prefix(prefix), {.timeout = absl::Seconds(120)});
  // The first progress message says the watch is live on r2.
  absl::StatusOr<v1::WatchStateResponse> first = stream->Next();
  ASSERT_TRUE(first.ok()) << first.status();

  std::mutex mu;
  std::map<std::string, std::vector<int64_t>> versions;
  int received = 0;
  std::thread reader([&] {
    while (true) {
      absl::StatusOr<v1::WatchStateResponse> event = NextEvent(*stream);
      if (!event.ok()) return;
      if (!event->has_change()) continue;
      std::lock_guard lock(mu);
      versions[event->change().object_key()].push_back(event->change().version());
      if (++received == 200) return;
    }
  });
  auto count = [&] {
    std::lock_guard lock(mu);
    return received;
  };
  // One agent per key, alternating values: every report is a change (10 keys x 20 versions).
  for (int i = 0; i < 200; ++i) {
    if (i == 60) {
      ASSERT_TRUE(test::WaitFor([&] { return count() >= 40; }, absl::Seconds(60)));
      router.Signal(SIGKILL);
    }
    absl::StatusOr<std::string> token =
        client.Report(kScenario, absl::StrCat(prefix, i % 10), "a1", (i / 10) % 2 ? "up" : "down");
    ASSERT_TRUE(token.ok()) << token.status();
  }
  bool all = test::WaitFor([&] { return count() == 200; }, absl::Seconds(90));
  stream->Cancel();
  reader.join();
  ASSERT_TRUE(all) << "received " << count() << " of 200 changes";
  EXPECT_GE(stream->resumes(), 1);
  std::vector<int64_t> expected;
  for (int64_t v = 1; v <= 20; ++v) expected.push_back(v);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(versions[absl::StrCat(prefix, k)], expected) << k;
}

// ---- tallyctl, run as a subprocess against the same cluster ----

struct CliRun {
  int exit_code = -1;
  std::string out, err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TallyctlTest : public ClientClusterTest {
 protected:
  // Runs tallyctl with `args`, after --routers=<n1,n2> unless `routers` says otherwise.
  CliRun Tallyctl(std::vector<std::string> args, const std::string& routers = "") {
    std::vector<std::string> argv = {
        TALLYCTL_PATH,
        absl::StrCat("--routers=", routers.empty() ? absl::StrJoin(Routers(), ",") : routers)};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string out_path = absl::StrCat(dir_.path(), "/out");
    const std::string err_path = absl::StrCat(dir_.path(), "/err");
    pid_t pid = fork();
    if (pid == 0) {
      dup2(open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), STDOUT_FILENO);
      dup2(open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), STDERR_FILENO);
      unsetenv("TALLY_ROUTERS");
      std::vector<char*> c_argv;
      for (std::string& a : argv) c_argv.push_back(a.data());
      c_argv.push_back(nullptr);
      execv(c_argv[0], c_argv.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CliRun run;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = ReadFile(out_path);
    run.err = ReadFile(err_path);
    return run;
  }

  // The token of a `report`/`set`/`purge` table output ("token: T\n").
  static std::string TokenOf(const CliRun& run) {
    std::string out = run.out;
    EXPECT_THAT(out, StartsWith("token: "));
    return out.substr(7, out.size() - 8);
  }

  test::TempDir dir_;
};

TEST_F(TallyctlTest, ReportThenGetPrintTheTokenAndTheState) {
  const std::string key = Key("site");
  CliRun report =
      Tallyctl({"report", kScenario, key, "attack", "--agent=a1", "--ttl=1h", "--attr=region=eu"});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  const std::string token = TokenOf(report);
  EXPECT_THAT(token, StartsWith("w1."));

  CliRun get = Tallyctl({"get", kScenario, key, "--min_token", token});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr(absl::StrCat("key:        ", key, "\n")));
  EXPECT_THAT(get.out, HasSubstr("state:      attack\n"));
  EXPECT_THAT(get.out, HasSubstr("tally:      attack=1\n"));
  EXPECT_THAT(get.out, HasSubstr("AGENT  STATE   OBSERVED"));
  EXPECT_THAT(get.out, HasSubstr("\na1     attack  "));

  CliRun json = Tallyctl({"-o", "json", "report", kScenario, key, "ok", "--agent=a2"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  v1::ReportStateResponse reported;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &reported).ok()) << json.out;
  get = Tallyctl({"get", kScenario, key, "--min_token=" + reported.token(), "--output=json"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  v1::GetStateResponse response;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(get.out, &response).ok()) << get.out;
  EXPECT_EQ(response.state().votes_size(), 2);
  EXPECT_EQ(std::count(get.out.begin(), get.out.end(), '\n'), 1);
}

TEST_F(TallyctlTest, ExitCodesSayWhatWentWrong) {
  CliRun missing = Tallyctl({"get", kScenario, Key("never")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("tallyctl get: NOT_FOUND: "));
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(Tallyctl({"list", "no-such-scenario"}).exit_code, 1);

  CliRun usage = Tallyctl({"get", kScenario});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("expected SCENARIO KEY"));
  EXPECT_EQ(Tallyctl({"get", kScenario, "k", "--frob"}).exit_code, 2);
  CliRun invalid = Tallyctl({"report", kScenario, std::string(257, 'k'), "s"});
  EXPECT_EQ(invalid.exit_code, 2);
  EXPECT_THAT(invalid.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(invalid.err, HasSubstr("object_key: 257 bytes"));
  CliRun token_file = Tallyctl({"describe", "--token_file=/nonexistent/token"});
  EXPECT_EQ(token_file.exit_code, 2);
  EXPECT_THAT(token_file.err, HasSubstr("--token_file: cannot read /nonexistent/token"));

  CliRun down = Tallyctl({"describe", "--timeout=3s"}, DeadAddress());
  EXPECT_EQ(down.exit_code, 3);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));
  // min_token of a write far in the future of its partition: not applied within --timeout.
  CliRun late =
      Tallyctl({"get", kScenario, "site-1", "--timeout=1s", "--min_token",
                absl::StrCat("w1.", kafka::PartitionFor("site-1", kPartitions), ".99999999")});
  EXPECT_EQ(late.exit_code, 3) << late.err;
  EXPECT_THAT(late.err, HasSubstr("DEADLINE_EXCEEDED"));

  CliRun help = Tallyctl({"purge", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Usage: tallyctl purge SCENARIO KEY"));
  EXPECT_THAT(help.out, HasSubstr("Exit codes:"));
}

TEST_F(TallyctlTest, ListPrintsATableOrOneJsonObjectPerLine) {
  auto client = MakeClient();
  std::vector<std::string> keys;
  for (int i = 0; i < 7; ++i) {
    const std::string key = Key(absl::StrCat("obj-", i));
    absl::StatusOr<std::string> token = client->Report(kScenario, key, "a1", "ok");
    ASSERT_TRUE(token.ok()) << token.status();
    ASSERT_TRUE(client->Get(kScenario, key, {.min_token = *token}).ok());
    keys.push_back(key);
  }
  CliRun table = Tallyctl({"list", kScenario, Key("obj-"), "--page_size=3"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::vector<std::string> lines = absl::StrSplit(table.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 8u) << table.out;
  EXPECT_THAT(lines[0], StartsWith("KEY"));
  EXPECT_THAT(lines[0], HasSubstr("STATE"));
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_THAT(lines[i + 1], StartsWith(keys[i] + "  ok  ")) << table.out;
  }

  CliRun json = Tallyctl({"list", kScenario, Key("obj-"), "--page_size=2", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  lines = absl::StrSplit(json.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    v1::ObjectState state;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[i], &state).ok()) << lines[i];
    EXPECT_EQ(state.object_key(), keys[i]);
  }

  CliRun limited = Tallyctl({"list", kScenario, Key("obj-"), "--limit=2", "-o", "json"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  EXPECT_EQ(std::count(limited.out.begin(), limited.out.end(), '\n'), 2);

  CliRun empty = Tallyctl({"list", kScenario, Key("nothing/")});
  EXPECT_EQ(empty.exit_code, 0);
  EXPECT_EQ(empty.out, "");
  EXPECT_THAT(empty.err, HasSubstr("no states"));
}

TEST_F(TallyctlTest, SetPinsAndUnpinsAndPurgeRemoves) {
  const std::string key = Key("site");
  ASSERT_EQ(Tallyctl({"report", kScenario, key, "ok"}).exit_code, 0);
  CliRun set = Tallyctl({"set", kScenario, key, "attack", "--pin", "--reason=drill"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  CliRun get = Tallyctl({"get", kScenario, key, "--min_token=" + TokenOf(set)});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("state:      attack\n"));
  EXPECT_THAT(get.out, HasSubstr("pinned:     yes\n"));

  CliRun unpin = Tallyctl({"-o", "json", "set", kScenario, key});
  ASSERT_EQ(unpin.exit_code, 0) << unpin.err;
  v1::SetStateResponse unpinned;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(unpin.out, &unpinned).ok());
  get = Tallyctl({"get", kScenario, key, "--min_token=" + unpinned.token()});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("state:      ok\n"));
  EXPECT_THAT(get.out, HasSubstr("pinned:     no\n"));

  CliRun purge = Tallyctl({"purge", kScenario, key, "--reason", "done"});
  ASSERT_EQ(purge.exit_code, 0) << purge.err;
  get = Tallyctl({"get", kScenario, key, "--min_token=" + TokenOf(purge)});
  EXPECT_EQ(get.exit_code, 1) << get.out;
}

TEST_F(TallyctlTest, DescribePrintsNodesAndPartitions) {
  CliRun table = Tallyctl({"describe"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, StartsWith("NODE  "));
  EXPECT_THAT(table.out, HasSubstr("\nn1 "));
  EXPECT_THAT(table.out, HasSubstr("\nn2 "));
  EXPECT_THAT(table.out, HasSubstr("\nSCENARIO  PARTITION  STATUS"));
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_THAT(table.out, HasSubstr(absl::StrCat("\ndemo      ", p, "          ACTIVE ")));
  }
  CliRun json = Tallyctl({"describe", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  v1::DescribeClusterResponse described;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &described).ok()) << json.out;
  EXPECT_EQ(described.partitions_size(), kPartitions);
}

TEST_F(TallyctlTest, WatchPrintsTheSnapshotThenChanges) {
  auto client = MakeClient();
  const std::string prefix = Key("w/");
  ReportApplied(*client, prefix + "a", "a1", "ok");
  ReportApplied(*client, prefix + "b", "a1", "ok");

  // Two initial states and snapshot_done: three events.
  CliRun snapshot = Tallyctl({"watch", kScenario, "--prefix", prefix, "--initial", "--count=3"});
  ASSERT_EQ(snapshot.exit_code, 0) << snapshot.err;
  std::vector<std::string> lines = absl::StrSplit(snapshot.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << snapshot.out;
  // Partitions are snapshotted one after another: no key order across them.
  std::sort(lines.begin(), lines.begin() + 2, [&](const std::string& x, const std::string& y) {
    return x.find(prefix + "a") != std::string::npos && y.find(prefix + "b") != std::string::npos;
  });
  EXPECT_THAT(lines[0], HasSubstr("  initial  " + prefix + "a  ok  v1"));
  EXPECT_THAT(lines[1], HasSubstr("  initial  " + prefix + "b  ok  v1"));
  EXPECT_THAT(lines[2], HasSubstr("snapshot done"));

  // The JSON snapshot's last resume token, then a change after it.
  CliRun json =
      Tallyctl({"watch", kScenario, prefix + "a", "--initial", "--count=2", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  lines = absl::StrSplit(json.out, '\n', absl::SkipEmpty());
  v1::WatchStateResponse done;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines.back(), &done).ok()) << json.out;
  ASSERT_TRUE(done.has_snapshot_done()) << json.out;
  ReportApplied(*client, prefix + "a", "a2", "attack");
  ReportApplied(*client, prefix + "a", "a3", "attack");
  CliRun change = Tallyctl({"watch", kScenario, prefix + "a", "--resume_token", done.resume_token(),
                            "--count=1", "--for=60s"});
  ASSERT_EQ(change.exit_code, 0) << change.err;
  EXPECT_THAT(change.out, HasSubstr("  report  " + prefix + "a  ok -> attack  v2\n"));

  CliRun bad = Tallyctl({"watch", kScenario, "--resume_token=garbage", "--count=1"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
}

}  // namespace
}  // namespace tally
