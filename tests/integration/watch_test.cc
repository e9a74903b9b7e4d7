// WatchState against the real broker and real tallyd processes: list-then-watch reconstructs the
// final state under concurrent writers, a resume after a SIGKILLed router loses and repeats
// nothing, a slow watcher is cut off with a usable token while a fast one is unaffected, and a
// thousand watchers on one router all receive every event. Versions grow by one with every
// change of an object, so gaps and duplicates show per key.

#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/watch_reactor.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

using ::testing::HasSubstr;

struct Seen {
  std::string state;
  int64_t version = 0;
  bool operator==(const Seen&) const = default;
};

// One WatchState stream read on a thread of its own, with everything it received.
class StreamWatcher {
 public:
  StreamWatcher(v1::StateService::Stub& stub, v1::WatchStateRequest request)
      : request_(std::move(request)) {
    thread_ = std::thread([this, &stub] { Run(stub); });
  }
  ~StreamWatcher() { Cancel(); }

  void Cancel() {
    context_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  // Waits until the stream ended; its status.
  grpc::Status Wait() {
    if (thread_.joinable()) thread_.join();
    return status_;
  }

  std::mutex mu;
  std::map<std::string, Seen> states;                    // snapshot + changes applied
  std::map<std::string, std::vector<int64_t>> versions;  // change versions per key, in order
  std::vector<std::string> version_errors;               // changes that did not follow
  std::string last_token;
  int responses = 0;
  int changes = 0;
  bool snapshot_done = false;
  std::multimap<grpc::string_ref, grpc::string_ref> trailers;

 private:
  void Run(v1::StateService::Stub& stub) {
    auto reader = stub.WatchState(&context_, request_);
    v1::WatchStateResponse response;
    while (reader->Read(&response)) {
      std::lock_guard lock(mu);
      ++responses;
      if (!response.resume_token().empty()) last_token = response.resume_token();
      if (response.has_initial()) {
        states[response.initial().object_key()] = {response.initial().state(),
                                                   response.initial().version()};
      } else if (response.has_snapshot_done()) {
        snapshot_done = true;
      } else if (response.has_change()) {
        const v1::StateChange& c = response.change();
        ++changes;
        Seen& seen = states[c.object_key()];
        if (c.version() != seen.version + 1) {
          version_errors.push_back(
              absl::StrCat(c.object_key(), ": version ", c.version(), " after ", seen.version));
        }
        seen = {c.new_state(), c.version()};
        versions[c.object_key()].push_back(c.version());
      }
    }
    status_ = reader->Finish();
    std::lock_guard lock(mu);
    trailers = context_.GetServerTrailingMetadata();
  }

  v1::WatchStateRequest request_;
  grpc::ClientContext context_;
  grpc::Status status_;
  std::thread thread_;
};

v1::WatchStateRequest Watch(const std::string& prefix, const std::string& key, bool initial,
                            const std::string& token = "") {
  v1::WatchStateRequest request;
  request.set_scenario(TestCluster::kScenario);
  request.set_prefix(prefix);
  request.set_object_key(key);
  request.set_send_initial(initial);
  request.set_resume_token(token);
  return request;
}

// The last write of each partition: partition → (object key, token).
using LastWrites = std::map<std::string, std::pair<std::string, std::string>>;

// Writes `requests` through one ReportStates stream; true if every one got a token. Records the
// last write of each partition in `last` if given.
bool ReportAll(v1::StateService::Stub& stub, const std::vector<v1::ReportStateRequest>& requests,
               LastWrites* last = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto stream = stub.ReportStates(&context);
  std::thread writer([&] {
    for (const auto& r : requests) {
      if (!stream->Write(r)) break;
    }
    stream->WritesDone();
  });
  v1::ReportStateResponse response;
  size_t answered = 0;
  while (stream->Read(&response)) {
    if (last != nullptr && answered < requests.size()) {
      // "w1.<partition>.<offset>": the partition is the middle part.
      std::string partition = response.token().substr(0, response.token().rfind('.'));
      (*last)[partition] = {requests[answered].object_key(), response.token()};
    }
    ++answered;
  }
  writer.join();
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return status.ok() && answered == requests.size();
}

// Waits until every write in `last` has been applied (GetState with its token).
bool WaitApplied(v1::StateService::Stub& stub, const LastWrites& last) {
  for (const auto& [partition, write] : last) {
    v1::GetStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_object_key(write.first);
    request.set_min_token(write.second);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::GetStateResponse response;
    grpc::Status status = stub.GetState(&context, request, &response);
    if (!status.ok()) {
      ADD_FAILURE() << "GetState(min_token) of " << write.first << ": " << status.error_message();
      return false;
    }
  }
  return true;
}

// Every state under `prefix`, through ListState.
std::map<std::string, Seen> ListAll(v1::StateService::Stub& stub, const std::string& prefix) {
  std::map<std::string, Seen> out;
  std::string token;
  do {
    v1::ListStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_prefix(prefix);
    request.set_page_size(1000);
    request.set_page_token(token);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ListStateResponse response;
    grpc::Status status = stub.ListState(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) break;
    for (const auto& s : response.states()) out[s.object_key()] = {s.state(), s.version()};
    token = response.next_page_token();
  } while (!token.empty());
  return out;
}

// What differs between two maps of states, for failure messages.
std::string Diff(const std::map<std::string, Seen>& watched,
                 const std::map<std::string, Seen>& listed) {
  std::string out;
  for (const auto& [key, seen] : listed) {
    auto it = watched.find(key);
    if (it == watched.end()) {
      absl::StrAppend(&out, key, ": not watched (listed ", seen.state, " v", seen.version, ")\n");
    } else if (it->second.state != seen.state || it->second.version != seen.version) {
      absl::StrAppend(&out, key, ": watched ", it->second.state, " v", it->second.version,
                      ", listed ", seen.state, " v", seen.version, "\n");
    }
  }
  for (const auto& [key, seen] : watched) {
    if (!listed.count(key)) absl::StrAppend(&out, key, ": watched but not listed\n");
  }
  return out;
}

// Waits until the watcher has received at least one response (the stream is registered).
bool Registered(StreamWatcher& watcher) {
  return WaitFor(
      [&] {
        std::lock_guard lock(watcher.mu);
        return watcher.responses > 0;
      },
      absl::Seconds(30));
}

class WatchTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) std::cout << cluster_->Logs() << std::endl;
  }
  std::unique_ptr<TestCluster> cluster_;
};

TEST_F(WatchTest, SendInitialThenStreamEqualsTheFinalListUnderConcurrentWriters) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 4);
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->StartNode("n2").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1", "n2"})) << cluster_->Logs();

  const uint64_t seed = std::random_device{}();
  std::cout << "seed: " << seed << std::endl;
  std::mt19937_64 rng(seed);
  const std::vector<std::string> states = {"attack", "ok", "unknown"};
  std::vector<std::vector<v1::ReportStateRequest>> rounds(8);
  for (auto& round : rounds) {
    for (int i = 0; i < 100; ++i) {
      std::string key = absl::StrCat(rng() % 4 == 0 ? "x-" : "w-", rng() % 30);
      round.push_back(ReportRequest(key, absl::StrCat("a", rng() % 3), states[rng() % 3]));
    }
  }
  // Writers keep going while the watches list and then stream.
  std::atomic<int> rounds_done{0};
  LastWrites last;
  std::thread writers([&] {
    for (const auto& round : rounds) {
      ASSERT_TRUE(ReportAll(cluster_->state(rounds_done % 2 ? "n1" : "n2"), round, &last));
      ++rounds_done;
    }
  });
  ASSERT_TRUE(WaitFor([&] { return rounds_done.load() >= 2; }, absl::Seconds(60)));
  StreamWatcher prefix(cluster_->state("n1"), Watch("w-", "", true));
  StreamWatcher single(cluster_->state("n2"), Watch("", "w-7", true));
  writers.join();
  ASSERT_TRUE(WaitApplied(cluster_->state("n1"), last));  // the list is the final state

  const std::map<std::string, Seen> final_states = ListAll(cluster_->state("n1"), "w-");
  ASSERT_FALSE(final_states.empty());
  bool converged = WaitFor(
      [&] {
        std::lock_guard lock(prefix.mu);
        return prefix.states == final_states;
      },
      absl::Seconds(60));
  std::map<std::string, Seen> only_7;
  if (final_states.count("w-7")) only_7["w-7"] = final_states.at("w-7");
  bool single_converged = WaitFor(
      [&] {
        std::lock_guard lock(single.mu);
        return single.states == only_7;
      },
      absl::Seconds(30));
  prefix.Cancel();
  single.Cancel();
  EXPECT_TRUE(converged) << "the prefix watch does not end at the listed states:\n"
                         << Diff(prefix.states, final_states);
  EXPECT_TRUE(single_converged) << "the single-key watch does not end at the listed state:\n"
                                << Diff(single.states, only_7);
  EXPECT_TRUE(prefix.snapshot_done);
  EXPECT_TRUE(single.snapshot_done);
  EXPECT_THAT(prefix.version_errors, ::testing::IsEmpty());
  EXPECT_THAT(single.version_errors, ::testing::IsEmpty());
}

TEST_F(WatchTest, SendInitialFromShardsRestoredOnAnotherNodeStartsAtTheirChangesOffset) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 4);
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();
  auto flips = [](int from, int count) {
    std::vector<v1::ReportStateRequest> requests;
    for (int i = from; i < from + count; ++i) {
      requests.push_back(
          ReportRequest(absl::StrCat("m-", i % 30), "a", (i / 30) % 2 ? "up" : "down"));
    }
    return requests;
  };
  LastWrites last;
  ASSERT_TRUE(ReportAll(cluster_->state("n1"), flips(0, 300), &last));
  ASSERT_TRUE(WaitApplied(cluster_->state("n1"), last));
  // n2 takes over some partitions by restoring them from the changelog: its shards learn their
  // changes offsets from the changelog records, not from a meta they never wrote.
  ASSERT_TRUE(cluster_->StartNode("n2").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1", "n2"})) << cluster_->Logs();

  StreamWatcher watcher(cluster_->state("n2"), Watch("m-", "", true));
  ASSERT_TRUE(ReportAll(cluster_->state("n2"), flips(300, 300), &last));
  ASSERT_TRUE(WaitApplied(cluster_->state("n1"), last));
  const std::map<std::string, Seen> final_states = ListAll(cluster_->state("n1"), "m-");
  ASSERT_EQ(final_states.size(), 30u);
  bool converged = WaitFor(
      [&] {
        std::lock_guard lock(watcher.mu);
        return watcher.states == final_states;
      },
      absl::Seconds(60));
  watcher.Cancel();
  EXPECT_TRUE(converged) << Diff(watcher.states, final_states);
  EXPECT_THAT(watcher.version_errors, ::testing::IsEmpty());
  for (const auto& [key, seen] : final_states) EXPECT_EQ(seen.version, 20) << key;
}

TEST_F(WatchTest, ResumeOnAnotherRouterAfterSigkillHasNoGapAndNoDuplicate) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 4);
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->StartRouter("r1").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("r1", {"n1"})) << cluster_->Logs();

  auto first = std::make_unique<StreamWatcher>(cluster_->state("r1"), Watch("", "", false));
  ASSERT_TRUE(Registered(*first));  // the first progress message: the watch is live

  // One agent per key, alternating values: every report is a change.
  std::vector<v1::ReportStateRequest> requests;
  for (int i = 0; i < 1200; ++i) {
    requests.push_back(
        ReportRequest(absl::StrCat("k-", i % 20), "a", (i / 20) % 2 ? "up" : "down"));
  }
  LastWrites last;
  std::thread writer([&] {
    for (size_t i = 0; i < requests.size(); i += 100) {
      std::vector<v1::ReportStateRequest> batch(
          requests.begin() + i, requests.begin() + std::min(i + 100, requests.size()));
      ASSERT_TRUE(ReportAll(cluster_->state("n1"), batch, &last));
    }
  });
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard lock(first->mu);
        return first->changes >= 100;
      },
      absl::Seconds(60)));
  cluster_->process("r1").Signal(SIGKILL);
  first->Wait();
  std::string token;
  std::map<std::string, std::vector<int64_t>> versions;
  {
    std::lock_guard lock(first->mu);
    token = first->last_token;
    versions = first->versions;
  }
  ASSERT_FALSE(token.empty());

  ASSERT_TRUE(cluster_->StartRouter("r2").ok());
  StreamWatcher resumed(cluster_->state("r2"), Watch("", "", false, token));
  writer.join();
  ASSERT_TRUE(WaitApplied(cluster_->state("n1"), last));
  const std::map<std::string, Seen> final_states = ListAll(cluster_->state("n1"), "k-");
  ASSERT_EQ(final_states.size(), 20u);
  bool caught_up = WaitFor(
      [&] {
        std::lock_guard lock(resumed.mu);
        for (const auto& [key, seen] : final_states) {
          auto it = resumed.versions.find(key);
          int64_t last = it != resumed.versions.end()
                             ? it->second.back()
                             : (versions.count(key) ? versions[key].back() : 0);
          if (last < seen.version) return false;
        }
        return true;
      },
      absl::Seconds(90));
  resumed.Cancel();
  ASSERT_TRUE(caught_up) << cluster_->Logs();
  // The union, per key: exactly 1, 2, ..., final version.
  for (const auto& [key, seen] : final_states) {
    std::vector<int64_t> all = versions[key];
    for (int64_t v : resumed.versions[key]) all.push_back(v);
    std::vector<int64_t> expected;
    for (int64_t v = 1; v <= seen.version; ++v) expected.push_back(v);
    EXPECT_EQ(all, expected) << key;
  }
}

TEST_F(WatchTest, SlowWatcherIsCutOffWithAUsableTokenAndFastOnesAreNot) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 2, "watch_max_queued: 500");
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();

  // The slow client reads nothing after its first message; without BDP probing and with a
  // small window, the router's writes to it stall after a few kilobytes.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8192);
  args.SetString("tally.test.channel", "slow");  // a connection of its own
  auto slow_stub = v1::StateService::NewStub(grpc::CreateCustomChannel(
      cluster_->process("n1").address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext slow_context;
  auto slow = slow_stub->WatchState(&slow_context, Watch("", "", false));
  v1::WatchStateResponse first;
  ASSERT_TRUE(slow->Read(&first));  // registered (a progress message)
  StreamWatcher fast(cluster_->state("n1"), Watch("", "", false));
  ASSERT_TRUE(Registered(fast));

  std::vector<v1::ReportStateRequest> requests;
  for (int i = 0; i < 3000; ++i) {
    requests.push_back(
        ReportRequest(absl::StrCat("s-", i % 50), "a", (i / 50) % 2 ? "up" : "down"));
  }
  // In waves smaller than the queue bound, so a watcher that keeps up never overflows: the
  // bound is about falling behind, not about bursts it can absorb.
  for (size_t wave = 0; wave < requests.size(); wave += 250) {
    std::vector<v1::ReportStateRequest> batch(requests.begin() + wave,
                                              requests.begin() + wave + 250);
    ASSERT_TRUE(ReportAll(cluster_->state("n1"), batch));
    ASSERT_TRUE(WaitFor(
        [&] {
          std::lock_guard lock(fast.mu);
          return fast.changes == static_cast<int>(wave + 250);
        },
        absl::Seconds(60)))
        << "the fast watcher did not get every event: " << fast.changes << " "
        << absl::StrJoin(fast.version_errors, "; ");
  }

  // Now the slow one reads what was buffered for it, then learns it was cut off.
  std::map<std::string, std::vector<int64_t>> versions;
  std::string token = first.resume_token();
  v1::WatchStateResponse response;
  while (slow->Read(&response)) {
    token = response.resume_token();
    if (response.has_change()) {
      versions[response.change().object_key()].push_back(response.change().version());
    }
  }
  grpc::Status status = slow->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  auto trailer = slow_context.GetServerTrailingMetadata().find("tally-resume-token");
  ASSERT_NE(trailer, slow_context.GetServerTrailingMetadata().end());
  const std::string cut_token(trailer->second.data(), trailer->second.size());
  EXPECT_EQ(cut_token, token) << "the token is the one of the last event received";
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("resume_token=", cut_token)));

  // Resuming from it delivers exactly the rest.
  StreamWatcher resumed(cluster_->state("n1"), Watch("", "", false, cut_token));
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard lock(resumed.mu);
        int total = resumed.changes;
        for (const auto& [key, v] : versions) total += static_cast<int>(v.size());
        return total >= 3000;
      },
      absl::Seconds(90)));
  resumed.Cancel();
  for (int k = 0; k < 50; ++k) {
    std::string key = absl::StrCat("s-", k);
    std::vector<int64_t> all = versions[key];
    for (int64_t v : resumed.versions[key]) all.push_back(v);
    std::vector<int64_t> expected;
    for (int64_t v = 1; v <= 60; ++v) expected.push_back(v);
    EXPECT_EQ(all, expected) << key;
  }
  fast.Cancel();
  EXPECT_THAT(fast.version_errors, ::testing::IsEmpty());
}

// A thousand watchers on one router, as callback-API streams on a few connections.
class CountingWatcher final : public WatchReactor {
 public:
  CountingWatcher(v1::StateService::Stub& stub, const v1::WatchStateRequest& request) {
    Start(stub, request);
  }
  ~CountingWatcher() override { Stop(); }

  size_t distinct_changes() {
    std::lock_guard lock(mu_);
    return seen_.size();
  }
  int duplicates() {
    std::lock_guard lock(mu_);
    return duplicates_;
  }

 private:
  void OnResponse(const v1::WatchStateResponse& response, absl::Time) override {
    if (!response.has_change()) return;
    auto [it, inserted] = seen_.insert(
        absl::StrCat(response.change().object_key(), "@", response.change().version()));
    if (!inserted) ++duplicates_;
  }

  // Guarded by mu_.
  int duplicates_ = 0;
  std::set<std::string> seen_;
};

TEST_F(WatchTest, AThousandWatchersOnOneRouterAllReceiveEveryEvent) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 2);
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();

  std::vector<std::unique_ptr<v1::StateService::Stub>> stubs;
  for (int c = 0; c < 4; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("tally.test.connection", c);
    stubs.push_back(v1::StateService::NewStub(grpc::CreateCustomChannel(
        cluster_->process("n1").address(), grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<std::unique_ptr<CountingWatcher>> watchers;
  for (int i = 0; i < 1000; ++i) {
    // Half watch everything, half the prefix of the keys written.
    watchers.push_back(
        std::make_unique<CountingWatcher>(*stubs[i % 4], Watch(i % 2 ? "t-" : "", "", false)));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& w : watchers) {
          if (w->responses() == 0) return false;
        }
        return true;
      },
      absl::Seconds(60)))
      << "not every watcher got its first progress message";
  auto stats = cluster_->Describe("n1");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->watch().watchers(), 1000);

  std::vector<v1::ReportStateRequest> requests;
  for (int i = 0; i < 200; ++i) {
    requests.push_back(
        ReportRequest(absl::StrCat("t-", i % 40), "a", (i / 40) % 2 ? "up" : "down"));
  }
  ASSERT_TRUE(ReportAll(cluster_->state("n1"), requests));
  bool all = WaitFor(
      [&] {
        for (auto& w : watchers) {
          if (w->distinct_changes() < 200) return false;
        }
        return true;
      },
      absl::Seconds(120));
  int short_watchers = 0, duplicates = 0;
  for (auto& w : watchers) {
    short_watchers += w->distinct_changes() != 200 ? 1 : 0;
    duplicates += w->duplicates();
  }
  EXPECT_TRUE(all);
  EXPECT_EQ(short_watchers, 0);
  EXPECT_EQ(duplicates, 0);
}

// An idle watcher's progress messages (router.watch_progress_interval 2 s here): its first token
// within about a second of going live, then a newer one only once the interval has passed and
// the changes topics moved past its token, and none while nothing moves. (10,000 idle watchers
// each written to every second took most of a router core.)
TEST_F(WatchTest, AnIdleWatcherGetsATokenAtOnceThenNewerOnesOnlyAtTheIntervalWhenTheFeedMoved) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 2,
                                           "watch_progress_interval { seconds: 2 }");
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();

  struct Received {
    absl::Time at;
    v1::WatchStateResponse response;
  };
  std::mutex mu;
  std::vector<Received> received;  // guarded by mu
  grpc::ClientContext context;
  auto reader = cluster_->state("n1").WatchState(&context, Watch("", "quiet", false));
  std::thread thread([&] {
    v1::WatchStateResponse response;
    while (reader->Read(&response)) {
      std::lock_guard lock(mu);
      received.push_back({absl::Now(), response});
    }
  });
  auto count = [&] {
    std::lock_guard lock(mu);
    return received.size();
  };
  auto at = [&](size_t i) {
    std::lock_guard lock(mu);
    return received.at(i);
  };

  const absl::Time opened = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return count() >= 1; }, absl::Seconds(10)));
  const Received first = at(0);
  EXPECT_TRUE(first.response.has_progress());
  EXPECT_FALSE(first.response.resume_token().empty());
  EXPECT_LT(first.at - opened, absl::Seconds(5)) << "the first token comes at the first tick";

  // Other objects change: the feed moves, and the next progress carries a newer token, an
  // interval after the first at the earliest.
  ASSERT_TRUE(ReportAll(cluster_->state("n1"),
                        {ReportRequest("busy-1", "a", "up"), ReportRequest("busy-2", "a", "up")}));
  ASSERT_TRUE(WaitFor([&] { return count() >= 2; }, absl::Seconds(20)));
  const Received second = at(1);
  EXPECT_TRUE(second.response.has_progress()) << "no change of object quiet was written";
  EXPECT_NE(second.response.resume_token(), first.response.resume_token());
  EXPECT_GE(second.at - first.at, absl::Milliseconds(1900));

  // Nothing moves now: nothing more is written to the watcher, over two intervals and more.
  const absl::Time quiet_since = absl::Now();
  EXPECT_FALSE(WaitFor([&] { return count() > 2; }, absl::Seconds(5)))
      << "a progress message although the feed did not move, "
      << absl::FormatDuration(at(count() - 1).at - quiet_since) << " into the quiet";

  // The newer token resumes exactly where the watcher was: a change of quiet comes, and only it.
  ASSERT_TRUE(ReportAll(cluster_->state("n1"), {ReportRequest("quiet", "a", "down")}));
  StreamWatcher resumed(cluster_->state("n1"),
                        Watch("", "quiet", false, second.response.resume_token()));
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard lock(resumed.mu);
        return resumed.changes >= 1;
      },
      absl::Seconds(30)));
  {
    std::lock_guard lock(resumed.mu);
    EXPECT_EQ(resumed.changes, 1);
    EXPECT_TRUE(resumed.version_errors.empty()) << absl::StrJoin(resumed.version_errors, "; ");
  }
  context.TryCancel();
  thread.join();
}

// SIGTERM of a router with watchers attached (live ones, and one whose snapshot is being
// streamed): the streams end, their queues close, and tallyd exits cleanly.
TEST_F(WatchTest, RouterStoppedWithWatchersAttachedEndsThemAndExitsCleanly) {
  cluster_ = std::make_unique<TestCluster>(KafkaBootstrapOrDie(), 2);
  ASSERT_TRUE(cluster_->StartNode("n1").ok());
  ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();
  std::vector<v1::ReportStateRequest> requests;
  for (int i = 0; i < 100; ++i) requests.push_back(ReportRequest(absl::StrCat("s-", i), "a", "up"));
  ASSERT_TRUE(ReportAll(cluster_->state("n1"), requests));

  std::vector<std::unique_ptr<CountingWatcher>> watchers;
  for (int i = 0; i < 200; ++i) {
    watchers.push_back(std::make_unique<CountingWatcher>(cluster_->state("n1"),
                                                         Watch("", "", /*send_initial=*/i == 0)));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& w : watchers) {
          if (w->responses() == 0) return false;
        }
        return true;
      },
      absl::Seconds(60)));
  const int status = cluster_->process("n1").Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << cluster_->Logs();
  EXPECT_THAT(cluster_->process("n1").Log(),
              ::testing::Not(HasSubstr("WatchState calls still open at shutdown")));
  watchers.clear();  // each Stop returns: gRPC is done with every stream
}

}  // namespace
}  // namespace tally::test
