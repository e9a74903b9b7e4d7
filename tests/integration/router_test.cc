// The public API against the real broker: a cluster of three real tallyd processes (node and
// router roles each), driven through gRPC as clients would, checked against an in-memory model of
// the majority reducer: randomised workloads, read-your-writes, reads while partitions move, and
// bad input that must be refused without writing anything.

#include <signal.h>

#include <atomic>
#include <future>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/kafka/partitioner.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/metrics_http.h"
#include "tests/integration/node_harness.h"
#include "tests/integration/reducer_model.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

using ::testing::HasSubstr;

constexpr int kPartitions = 6;
constexpr const char* kScenario = TestCluster::kScenario;

struct ModelObject {
  std::map<std::string, std::string> votes;  // agent → state
  std::string state;
};

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string id : {"n1", "n2", "n3"}) ASSERT_TRUE(cluster_.StartNode(id).ok());
    // The group has settled once every node owns a share.
    ASSERT_TRUE(cluster_.WaitAllActive("n1", {"n1", "n2", "n3"})) << "partitions not all active";
  }

  void TearDown() override {
    if (HasFailure()) std::cout << cluster_.Logs() << std::endl;
  }

  // ReportState through `via`; returns the token and updates the model.
  std::string Report(const std::string& via, const std::string& key, const std::string& agent,
                     const std::string& state) {
    v1::ReportStateRequest request = ReportRequest(key, agent, state);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ReportStateResponse response;
    grpc::Status status = cluster_.state(via).ReportState(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    Apply(key, agent, state);
    return response.token();
  }

  void Apply(const std::string& key, const std::string& agent, const std::string& state) {
    ModelObject& object = model_[key];
    object.votes[agent] = state;
    object.state = ModelReduce("maj", object.votes, object.state);
  }

  grpc::Status Get(const std::string& via, const std::string& key, const std::string& min_token,
                   v1::GetStateResponse* response, absl::Duration deadline = absl::Seconds(30)) {
    v1::GetStateRequest request;
    request.set_scenario(kScenario);
    request.set_object_key(key);
    request.set_min_token(min_token);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return cluster_.state(via).GetState(&context, request, response);
  }

  // Every state of the scenario through ListState pages of `page_size`.
  std::vector<v1::ObjectState> ListAll(const std::string& via, const std::string& prefix,
                                       int page_size) {
    std::vector<v1::ObjectState> states;
    std::string token;
    for (int pages = 0; pages < 10000; ++pages) {
      v1::ListStateRequest request;
      request.set_scenario(kScenario);
      request.set_prefix(prefix);
      request.set_page_size(page_size);
      request.set_page_token(token);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::ListStateResponse response;
      grpc::Status status = cluster_.state(via).ListState(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      EXPECT_LE(response.states_size(), page_size);
      for (const v1::ObjectState& s : response.states()) states.push_back(s);
      token = response.next_page_token();
      if (token.empty()) break;
    }
    return states;
  }

  // Checks one object's state as served against the model.
  void ExpectMatchesModel(const std::string& key, const v1::ObjectState& state) {
    const ModelObject& object = model_.at(key);
    EXPECT_EQ(state.state(), object.state) << key;
    std::map<std::string, int> tally;
    for (const auto& [agent, value] : object.votes) ++tally[value];
    std::map<std::string, int> served(state.tally().begin(), state.tally().end());
    EXPECT_EQ(served, tally) << key;
    std::map<std::string, std::string> votes;
    for (const v1::Vote& v : state.votes()) votes[v.agent_id()] = v.state();
    EXPECT_EQ(votes, object.votes) << key;
  }

  std::string Topic(const std::string& kind) const {
    return absl::StrCat(cluster_.app(), ".", kScenario, ".", kind);
  }

  TestCluster cluster_{KafkaBootstrapOrDie(), kPartitions};
  std::map<std::string, ModelObject> model_;
};

const std::vector<std::string> kRouters = {"n1", "n2", "n3"};

TEST_F(RouterTest, RandomWorkloadThroughEveryRouterMatchesTheModel) {
  const uint64_t seed = std::random_device{}();
  std::cout << "seed: " << seed << std::endl;
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::vector<std::string> states = {"attack", "ok", "unknown"};
  std::map<std::string, std::string> last_token;  // key → token of its last write

  // A third of the reports one by one through random routers...
  for (int i = 0; i < 300; ++i) {
    std::string key = absl::StrCat("site-", rng() % 40);
    last_token[key] = Report(kRouters[rng() % 3], key, absl::StrCat("agent-", rng() % 5),
                             states[rng() % states.size()]);
  }
  // ...a third in ReportStates streams, answered one token per request, in order...
  for (int stream = 0; stream < 3; ++stream) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto rpc = cluster_.state(kRouters[stream]).ReportStates(&context);
    std::vector<std::string> keys;
    for (int i = 0; i < 100; ++i) {
      std::string key = absl::StrCat("site-", rng() % 40);
      std::string agent = absl::StrCat("agent-", rng() % 5);
      std::string state = states[rng() % states.size()];
      ASSERT_TRUE(rpc->Write(ReportRequest(key, agent, state)));
      Apply(key, agent, state);
      keys.push_back(key);
    }
    rpc->WritesDone();
    v1::ReportStateResponse response;
    size_t answered = 0;
    while (rpc->Read(&response)) {
      ASSERT_LT(answered, keys.size());
      EXPECT_EQ(response.token().rfind("w1.", 0), 0u) << response.token();
      last_token[keys[answered++]] = response.token();
    }
    grpc::Status status = rpc->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(answered, keys.size());
  }
  // ...and a third in ReportBatch calls of random sizes, answered with one token a report, in
  // order (a key may come twice in a batch: the later report is the one that counts).
  for (int sent = 0; sent < 300;) {
    v1::ReportBatchRequest batch;
    const int size = std::min<int>(300 - sent, 1 + rng() % 60);
    for (int i = 0; i < size; ++i) {
      std::string key = absl::StrCat("site-", rng() % 40);
      std::string agent = absl::StrCat("agent-", rng() % 5);
      std::string state = states[rng() % states.size()];
      *batch.add_reports() = ReportRequest(key, agent, state);
      Apply(key, agent, state);
    }
    sent += size;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ReportBatchResponse response;
    grpc::Status status =
        cluster_.state(kRouters[rng() % 3]).ReportBatch(&context, batch, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.tokens_size(), size);
    for (int i = 0; i < size; ++i) {
      const std::string& key = batch.reports(i).object_key();
      const std::string& token = response.tokens(i);
      EXPECT_EQ(token.rfind(absl::StrCat("w1.", kafka::PartitionFor(key, kPartitions), "."), 0), 0u)
          << key << " " << token;
      last_token[key] = token;
    }
  }

  // Every object through a random router, after its last write.
  for (const auto& [key, token] : last_token) {
    v1::GetStateResponse response;
    grpc::Status status = Get(kRouters[rng() % 3], key, token, &response);
    ASSERT_TRUE(status.ok()) << key << ": " << status.error_message();
    ExpectMatchesModel(key, response.state());
    int32_t partition = kafka::PartitionFor(key, kPartitions);
    auto cluster = cluster_.Describe("n1");
    ASSERT_TRUE(cluster.ok());
    EXPECT_EQ(response.served_by(), cluster->partitions(partition).active_node()) << key;
  }

  // The whole scenario in key order, in small pages: each object exactly once.
  for (int page_size : {7, 1000}) {
    std::vector<v1::ObjectState> listed = ListAll("n2", "site-", page_size);
    ASSERT_EQ(listed.size(), model_.size()) << "page_size " << page_size;
    auto model_it = model_.begin();
    for (const v1::ObjectState& state : listed) {
      EXPECT_EQ(state.object_key(), model_it->first);
      ExpectMatchesModel(model_it->first, state);
      ++model_it;
    }
  }
  EXPECT_TRUE(ListAll("n3", "nothing-here/", 10).empty());
}

TEST_F(RouterTest, ReadYourWritesOnEveryPartition) {
  std::set<int32_t> partitions;
  for (int i = 0; i < 150; ++i) {
    std::string key = absl::StrCat("ryw-", i % 24);
    partitions.insert(kafka::PartitionFor(key, kPartitions));
    std::string state = absl::StrCat("v", i);
    std::string token = Report(kRouters[i % 3], key, "writer", state);
    // Read through another router than the one written to.
    v1::GetStateResponse response;
    grpc::Status status = Get(kRouters[(i + 1) % 3], key, token, &response);
    ASSERT_TRUE(status.ok()) << "iteration " << i << ": " << status.error_message();
    ASSERT_EQ(response.state().votes_size(), 1) << "iteration " << i;
    EXPECT_EQ(response.state().votes(0).state(), state) << "iteration " << i;
    EXPECT_EQ(response.state().state(), state) << "iteration " << i;
  }
  EXPECT_EQ(partitions.size(), static_cast<size_t>(kPartitions));
}

TEST_F(RouterTest, ReadsKeepAnsweringRightWhilePartitionsMove) {
  std::map<std::string, std::string> tokens;
  for (int i = 0; i < 30; ++i) {
    std::string key = absl::StrCat("move-", i);
    tokens[key] = Report("n1", key, "a", absl::StrCat("s", i));
  }
  for (const auto& [key, token] : tokens) {
    v1::GetStateResponse response;
    ASSERT_TRUE(Get("n1", key, token, &response).ok());
  }

  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, failures{0}, wrong{0};
  std::mutex mu;
  std::map<std::string, std::set<std::string>> served_by;  // key → nodes that answered
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      while (!stop.load()) {
        for (int i = r; i < 30 && !stop.load(); i += 2) {
          std::string key = absl::StrCat("move-", i);
          v1::GetStateResponse response;
          // Routers retry on a fresh routing table within the deadline: a move must be
          // invisible to readers except as latency.
          grpc::Status status = Get("n1", key, "", &response, absl::Seconds(60));
          ++reads;
          if (!status.ok()) {
            ++failures;
            ADD_FAILURE() << key << ": " << status.error_code() << " " << status.error_message();
            continue;
          }
          if (response.state().state() != absl::StrCat("s", i)) ++wrong;
          std::lock_guard lock(mu);
          served_by[key].insert(response.served_by());
        }
      }
    });
  }

  // A fourth node joins: the cooperative rebalance moves partitions to it.
  ASSERT_TRUE(cluster_.StartNode("n4").ok());
  ASSERT_TRUE(cluster_.WaitAllActive("n1", {"n4"})) << "n4 got no partition";
  // n2 leaves: its partitions move to the others once the group notices.
  int reads_before_stop = reads.load();
  cluster_.process("n2").Signal(SIGTERM);
  bool moved = WaitFor(
      [&] {
        auto cluster = cluster_.Describe("n1");
        if (!cluster.ok()) return false;
        for (const v1::PartitionInfo& p : cluster->partitions()) {
          if (p.status() != v1::ACTIVE || p.active_node() == "n2") return false;
        }
        return true;
      },
      absl::Seconds(90));
  ASSERT_TRUE(moved) << "n2's partitions did not move";
  const int target = reads.load() + 60;  // some reads after the move completed, too
  ASSERT_TRUE(WaitFor([&] { return reads.load() >= target; }, absl::Seconds(60)));
  stop.store(true);
  for (std::thread& t : readers) t.join();

  EXPECT_GT(reads_before_stop, 0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  int moved_keys = 0;
  for (const auto& [key, nodes] : served_by) moved_keys += nodes.size() > 1 ? 1 : 0;
  EXPECT_GT(moved_keys, 0) << "no key changed owner while it was being read";
}

TEST_F(RouterTest, BadRequestsAreRefusedPreciselyAndWriteNothing) {
  using Stub = v1::StateService::Stub;
  using Admin = v1::AdminService::Stub;
  struct Case {
    std::string name;
    std::function<grpc::Status(Stub&, Admin&, grpc::ClientContext&)> call;
    grpc::StatusCode code;
    std::string message;
  };
  auto report = [](std::function<void(v1::ReportStateRequest&)> mutate) {
    return [mutate](Stub& stub, Admin&, grpc::ClientContext& context) {
      v1::ReportStateRequest request = ReportRequest("site-1", "agent-1", "attack");
      mutate(request);
      v1::ReportStateResponse response;
      return stub.ReportState(&context, request, &response);
    };
  };
  auto batch = [](std::function<void(v1::ReportBatchRequest&)> mutate) {
    return [mutate](Stub& stub, Admin&, grpc::ClientContext& context) {
      v1::ReportBatchRequest request;
      for (int i = 0; i < 5; ++i) {
        *request.add_reports() = ReportRequest(absl::StrCat("site-", i), "agent-1", "attack");
      }
      mutate(request);
      v1::ReportBatchResponse response;
      return stub.ReportBatch(&context, request, &response);
    };
  };
  auto get = [](std::function<void(v1::GetStateRequest&)> mutate) {
    return [mutate](Stub& stub, Admin&, grpc::ClientContext& context) {
      v1::GetStateRequest request;
      request.set_scenario(kScenario);
      request.set_object_key("site-1");
      mutate(request);
      v1::GetStateResponse response;
      return stub.GetState(&context, request, &response);
    };
  };
  auto list = [](std::function<void(v1::ListStateRequest&)> mutate) {
    return [mutate](Stub& stub, Admin&, grpc::ClientContext& context) {
      v1::ListStateRequest request;
      request.set_scenario(kScenario);
      mutate(request);
      v1::ListStateResponse response;
      return stub.ListState(&context, request, &response);
    };
  };
  auto set = [](std::function<void(v1::SetStateRequest&)> mutate) {
    return [mutate](Stub&, Admin& admin, grpc::ClientContext& context) {
      v1::SetStateRequest request;
      request.set_scenario(kScenario);
      request.set_object_key("site-1");
      request.set_state("attack");
      mutate(request);
      v1::SetStateResponse response;
      return admin.SetState(&context, request, &response);
    };
  };
  auto purge = [](std::function<void(v1::PurgeStateRequest&)> mutate) {
    return [mutate](Stub&, Admin& admin, grpc::ClientContext& context) {
      v1::PurgeStateRequest request;
      request.set_scenario(kScenario);
      request.set_object_key("site-1");
      mutate(request);
      v1::PurgeStateResponse response;
      return admin.PurgeState(&context, request, &response);
    };
  };
  // The partition of site-1 and a token that names another one.
  const int32_t partition = kafka::PartitionFor("site-1", kPartitions);
  const std::string foreign_token = absl::StrCat("w1.", (partition + 1) % kPartitions, ".0");
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;

  std::vector<Case> cases = {
      {"empty scenario", report([](auto& r) { r.clear_scenario(); }), kInvalid,
       "scenario: must not be empty"},
      {"unknown scenario", report([](auto& r) { r.set_scenario("nope"); }),
       grpc::StatusCode::NOT_FOUND, "scenario: \"nope\" is not served here (scenarios: demo)"},
      {"empty key", report([](auto& r) { r.clear_object_key(); }), kInvalid,
       "object_key: must not be empty"},
      {"long key", report([](auto& r) { r.set_object_key(std::string(257, 'k')); }), kInvalid,
       "object_key: 257 bytes, the limit is 256"},
      {"NUL in key", report([](auto& r) { r.set_object_key(std::string("a\0b", 3)); }), kInvalid,
       "object_key: must not contain NUL"},
      {"empty agent", report([](auto& r) { r.clear_agent_id(); }), kInvalid,
       "agent_id: must not be empty"},
      {"long agent", report([](auto& r) { r.set_agent_id(std::string(129, 'a')); }), kInvalid,
       "agent_id: 129 bytes, the limit is 128"},
      {"empty state", report([](auto& r) { r.clear_state(); }), kInvalid,
       "state: must not be empty"},
      {"long state", report([](auto& r) { r.set_state(std::string(257, 's')); }), kInvalid,
       "state: 257 bytes, the limit is 256"},
      {"too many attributes", report([](auto& r) {
         for (int i = 0; i < 33; ++i) (*r.mutable_attributes())[absl::StrCat("k", i)] = "v";
       }),
       kInvalid, "attributes: 33 entries, the limit is 32"},
      {"long attribute value",
       report([](auto& r) { (*r.mutable_attributes())["k"] = std::string(1025, 'v'); }), kInvalid,
       "attributes[\"k\"]: 1025 bytes, the limit is 1024"},
      {"ttl too long", report([](auto& r) { r.mutable_ttl()->set_seconds(8 * 24 * 3600); }),
       kInvalid, "ttl: must be between 1ms and 168h"},
      {"negative ttl", report([](auto& r) { r.mutable_ttl()->set_seconds(-5); }), kInvalid,
       "ttl: must be a positive duration"},
      {"observed in the future", report([](auto& r) {
         r.mutable_observed_at()->set_seconds(absl::ToUnixSeconds(absl::Now()) + 3600);
       }),
       kInvalid, "s in the future"},
      {"empty batch", batch([](auto& b) { b.clear_reports(); }), kInvalid,
       "reports: must not be empty"},
      {"batch too large", batch([](auto& b) {
         while (b.reports_size() <= 1000) *b.add_reports() = b.reports(0);
       }),
       kInvalid, "reports: 1001 reports, the limit is 1000"},
      {"bad report in a batch", batch([](auto& b) { b.mutable_reports(4)->clear_state(); }),
       kInvalid, "reports[4].state: must not be empty"},
      {"unknown scenario in a batch",
       batch([](auto& b) { b.mutable_reports(2)->set_scenario("x"); }), grpc::StatusCode::NOT_FOUND,
       "reports[2].scenario: \"x\" is not served here"},
      {"garbage min_token", get([](auto& r) { r.set_min_token("garbage"); }), kInvalid,
       "min_token: \"garbage\" is not a write token"},
      {"min_token of another partition",
       get([foreign_token](auto& r) { r.set_min_token(foreign_token); }), kInvalid,
       "min_token: names a write to partition"},
      {"negative max_lag", get([](auto& r) { r.set_max_lag(-1); }), kInvalid,
       "max_lag: must be >= 0"},
      {"get without key", get([](auto& r) { r.clear_object_key(); }), kInvalid,
       "object_key: must not be empty"},
      {"page_size too large", list([](auto& r) { r.set_page_size(5000); }), kInvalid,
       "page_size: must be in [0, 1000]"},
      {"negative page_size", list([](auto& r) { r.set_page_size(-1); }), kInvalid,
       "page_size: must be in [0, 1000]"},
      {"garbage page_token", list([](auto& r) { r.set_page_token("xyz"); }), kInvalid,
       "page_token: \"xyz\" is not a page token"},
      {"list unknown scenario", list([](auto& r) { r.set_scenario("nope"); }),
       grpc::StatusCode::NOT_FOUND, "scenario: \"nope\""},
      {"pin without state", set([](auto& r) {
         r.clear_state();
         r.set_pin(true);
       }),
       kInvalid, "state: must not be empty"},
      {"long reason", set([](auto& r) { r.set_reason(std::string(1025, 'r')); }), kInvalid,
       "reason: 1025 bytes, the limit is 1024"},
      {"purge without key", purge([](auto& r) { r.clear_object_key(); }), kInvalid,
       "object_key: must not be empty"},
      {"purge unknown scenario", purge([](auto& r) { r.set_scenario("nope"); }),
       grpc::StatusCode::NOT_FOUND, "scenario: \"nope\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status status = c.call(cluster_.state("n2"), cluster_.admin("n2"), context);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }

  // Strings that are not UTF-8 cannot be sent by a well-behaved client; sent as raw bytes, they
  // fail to parse before any service code runs, and still get INVALID_ARGUMENT.
  {
    auto bytes = [](std::vector<std::pair<int, std::string>> fields) {
      std::string out;
      for (const auto& [number, value] : fields) {
        out.push_back(static_cast<char>(number << 3 | 2));
        out.push_back(static_cast<char>(value.size()));
        out += value;
      }
      return out;
    };
    grpc::GenericStub generic(
        grpc::CreateChannel(cluster_.process("n2").address(), grpc::InsecureChannelCredentials()));
    for (const auto& [method, request] : std::vector<std::pair<std::string, std::string>>{
             {"/tally.v1.StateService/ReportState",
              bytes({{1, kScenario}, {2, "bad\xff"}, {3, "agent-1"}, {4, "attack"}})},
             {"/tally.v1.StateService/ReportBatch",
              bytes({{1, bytes({{1, kScenario}, {2, "bad\xff"}, {3, "agent-1"}, {4, "up"}})}})},
             {"/tally.v1.StateService/GetState", bytes({{1, kScenario}, {2, "bad\xc3"}})}}) {
      SCOPED_TRACE(method);
      grpc::Slice slice(request);
      grpc::ByteBuffer buffer(&slice, 1);
      grpc::ByteBuffer reply;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      std::promise<grpc::Status> done;
      generic.UnaryCall(&context, method, grpc::StubOptions(), &buffer, &reply,
                        [&](grpc::Status status) { done.set_value(status); });
      grpc::Status status = done.get_future().get();
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
      EXPECT_THAT(status.error_message(), HasSubstr("UTF-8"));
    }
    EXPECT_TRUE(cluster_.Describe("n2").ok()) << "the router keeps serving";
  }

  // Nothing reached Kafka: a record written now is the first one on the reports topic.
  std::string token = Report("n2", "site-1", "agent-1", "attack");
  EXPECT_EQ(token, absl::StrCat("w1.", partition, ".0"));
  auto client = KafkaTestClient::Create(KafkaBootstrapOrDie());
  ASSERT_TRUE(client.ok());
  auto records = (*client)->ReadAll(Topic("reports"), kPartitions);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1u);
}

TEST_F(RouterTest, UnknownObjectIsNotFoundAndOperatorsPinAndPurge) {
  v1::GetStateResponse response;
  grpc::Status status = Get("n1", "never-reported", "", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("object_key: \"never-reported\" has no state"));

  Report("n1", "site-9", "a1", "ok");
  Report("n1", "site-9", "a2", "ok");
  auto admin = [&](auto call) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return call(context);
  };
  v1::SetStateRequest set;
  set.set_scenario(kScenario);
  set.set_object_key("site-9");
  set.set_state("attack");
  set.set_pin(true);
  set.set_reason("incident 42");
  v1::SetStateResponse set_response;
  ASSERT_TRUE(admin([&](grpc::ClientContext& c) {
                return cluster_.admin("n2").SetState(&c, set, &set_response);
              }).ok());
  ASSERT_TRUE(Get("n3", "site-9", set_response.token(), &response).ok());
  EXPECT_EQ(response.state().state(), "attack");
  EXPECT_TRUE(response.state().pinned());
  // The agents keep saying "ok": the pin holds.
  std::string token = Report("n1", "site-9", "a3", "ok");
  ASSERT_TRUE(Get("n3", "site-9", token, &response).ok());
  EXPECT_EQ(response.state().state(), "attack");
  // Unpinned, the majority decides again.
  set.set_pin(false);
  set.clear_state();
  ASSERT_TRUE(admin([&](grpc::ClientContext& c) {
                return cluster_.admin("n2").SetState(&c, set, &set_response);
              }).ok());
  ASSERT_TRUE(Get("n3", "site-9", set_response.token(), &response).ok());
  EXPECT_EQ(response.state().state(), "ok");
  EXPECT_FALSE(response.state().pinned());

  v1::PurgeStateRequest purge;
  purge.set_scenario(kScenario);
  purge.set_object_key("site-9");
  v1::PurgeStateResponse purge_response;
  ASSERT_TRUE(admin([&](grpc::ClientContext& c) {
                return cluster_.admin("n3").PurgeState(&c, purge, &purge_response);
              }).ok());
  status = Get("n1", "site-9", purge_response.token(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

// A router-only process whose calls to a node are all taken (router.node_calls_in_flight: 1)
// queues the reads that arrive meanwhile and sends them together as GetBatch calls; each read
// still gets its own object's state, and /metrics counts how they went.
TEST(RouterBatchingTest, ReadsQueuedBehindTheNodesCallsGoTogetherAndEachGetsItsOwnState) {
  TestCluster cluster(KafkaBootstrapOrDie(), kPartitions, "node_calls_in_flight: 1", "",
                      "metrics_address: \"127.0.0.1:0\"");
  ASSERT_TRUE(cluster.StartNode("n1").ok());
  ASSERT_TRUE(cluster.StartRouter("r1").ok());
  ASSERT_TRUE(cluster.WaitAllActive("r1", {"n1"})) << cluster.Logs();
  constexpr int kObjects = 40;
  auto key = [](int i) { return absl::StrCat("batch-", i); };
  auto get = [&](int i, const std::string& min_token, v1::GetStateResponse* response) {
    v1::GetStateRequest request;
    request.set_scenario(kScenario);
    request.set_object_key(key(i));
    request.set_min_token(min_token);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return cluster.state("r1").GetState(&context, request, response);
  };
  for (int i = 0; i < kObjects; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ReportStateResponse reported;
    ASSERT_TRUE(
        cluster.state("n1")
            .ReportState(&context, ReportRequest(key(i), "a", absl::StrCat("s", i)), &reported)
            .ok());
    v1::GetStateResponse visible;  // through r1 once applied (a read with min_token goes alone)
    grpc::Status status = get(i, reported.token(), &visible);
    ASSERT_TRUE(status.ok()) << key(i) << ": " << status.error_message();
  }

  // Bursts of reads from 8 threads at once, until some have shared a call (one burst nearly
  // always does; the deadline bounds an unlucky machine).
  std::atomic<int> reads{0}, wrong{0};
  auto burst = [&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int n = 0; n < kObjects; ++n) {
          const int i = (n + t * 5) % kObjects;
          v1::GetStateResponse response;
          grpc::Status status = get(i, "", &response);
          reads.fetch_add(1);
          if (!status.ok() || response.state().state() != absl::StrCat("s", i)) {
            ADD_FAILURE() << key(i) << ": " << status.error_message() << " "
                          << response.state().state();
            wrong.fetch_add(1);
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
  };
  std::string metrics;
  ASSERT_TRUE(WaitFor(
      [&] {
        burst();
        metrics = HttpGet(cluster.process("r1").Log(), "GET /metrics HTTP/1.0");
        return MetricValue(metrics, "tally_router_batched_reads_total") > 0;
      },
      absl::Seconds(60)))
      << metrics;
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(MetricValue(metrics, "tally_router_shard_calls_total{method=\"GetBatch\"}"), 1)
      << metrics;
  // Every read to n1 went alone or in a batch (a call cut short by its time slice sends its
  // reads again, so at least as many as were asked, with the 40 reads after the writes).
  EXPECT_GE(MetricValue(metrics, "tally_router_shard_calls_total{method=\"Get\"}") +
                MetricValue(metrics, "tally_router_batched_reads_total"),
            reads.load() + kObjects)
      << metrics;
  EXPECT_EQ(MetricValue(metrics, "tally_router_queued_reads_expired_total"), 0) << metrics;
}

}  // namespace
}  // namespace tally::test
