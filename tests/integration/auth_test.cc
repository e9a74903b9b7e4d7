// Authentication and roles through a real tallyd: every role against every public RPC, agents
// that cannot vote as another agent, and token files reloaded on SIGHUP.

#include <signal.h>

#include <fstream>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/auth/token_store.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/node_harness.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

using ::testing::HasSubstr;

constexpr const char* kScenario = TestCluster::kScenario;

std::string TokenLine(const std::string& token, const std::string& principal,
                      const std::string& roles) {
  return absl::StrCat(auth::Sha256Hex(token), " ", principal, " ", roles, "\n");
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ = tokens_dir_.path() + "/tokens";
    WriteTokens(
        TokenLine("t-agent-1", "agent-1", "agent") + TokenLine("t-agent-2", "agent-2", "agent") +
        TokenLine("t-reader", "reader-1", "reader") + TokenLine("t-admin", "admin-1", "admin"));
    cluster_ = std::make_unique<TestCluster>(
        KafkaBootstrapOrDie(), 2, "", absl::StrCat("auth { token_file: \"", token_file_, "\" }"));
    cluster_->set_admin_token("t-admin");
    ASSERT_TRUE(cluster_->StartNode("n1").ok());
    ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();
  }
  void TearDown() override {
    if (HasFailure()) std::cout << cluster_->Logs() << std::endl;
  }

  void WriteTokens(const std::string& text) {
    std::ofstream out(token_file_ + ".tmp", std::ios::trunc);
    out << text;
    out.close();
    std::rename((token_file_ + ".tmp").c_str(), token_file_.c_str());
  }

  // A context carrying `token` (none if empty).
  static void Authorize(grpc::ClientContext& context, const std::string& token) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  }

  grpc::Status Get(const std::string& token, const std::string& key, v1::GetStateResponse* out,
                   const std::string& min_token = "") {
    grpc::ClientContext context;
    Authorize(context, token);
    v1::GetStateRequest request;
    request.set_scenario(kScenario);
    request.set_object_key(key);
    request.set_min_token(min_token);
    return cluster_->state("n1").GetState(&context, request, out);
  }

  test::TempDir tokens_dir_;
  std::string token_file_;
  std::unique_ptr<TestCluster> cluster_;
};

TEST_F(AuthTest, EveryRoleAgainstEveryRpc) {
  using Call = std::function<grpc::Status(const std::string& token)>;
  v1::StateService::Stub& state = cluster_->state("n1");
  v1::AdminService::Stub& admin = cluster_->admin("n1");
  std::map<std::string, std::pair<Call, std::string>> rpcs = {
      // name → (call, role needed)
      {"ReportState",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::ReportStateResponse response;
          // Without an agent id: the router fills in the caller's principal.
          return state.ReportState(&context, ReportRequest("site-1", "", "up"), &response);
        },
        "agent"}},
      {"ReportStates",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          auto stream = state.ReportStates(&context);
          stream->Write(ReportRequest("site-1", "", "up"));
          stream->WritesDone();
          v1::ReportStateResponse response;
          while (stream->Read(&response)) {
          }
          return stream->Finish();
        },
        "agent"}},
      {"ReportBatch",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::ReportBatchRequest request;
          *request.add_reports() = ReportRequest("site-1", "", "up");
          *request.add_reports() = ReportRequest("site-3", "", "down");
          v1::ReportBatchResponse response;
          return state.ReportBatch(&context, request, &response);
        },
        "agent"}},
      {"GetState",
       {[&](const std::string& token) {
          v1::GetStateResponse response;
          grpc::Status status = Get(token, "site-1", &response);
          // No state yet is an answer too: the call got past authorization.
          return status.error_code() == grpc::StatusCode::NOT_FOUND ? grpc::Status::OK : status;
        },
        "reader"}},
      {"ListState",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::ListStateRequest request;
          request.set_scenario(kScenario);
          v1::ListStateResponse response;
          return state.ListState(&context, request, &response);
        },
        "reader"}},
      {"WatchState",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::WatchStateRequest request;
          request.set_scenario(kScenario);
          auto reader = state.WatchState(&context, request);
          v1::WatchStateResponse response;
          if (reader->Read(&response)) {  // the first progress message: the watch is open
            context.TryCancel();
            reader->Finish();
            return grpc::Status::OK;
          }
          return reader->Finish();
        },
        "reader"}},
      {"SetState",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::SetStateRequest request;
          request.set_scenario(kScenario);
          request.set_object_key("site-2");
          request.set_state("down");
          v1::SetStateResponse response;
          return admin.SetState(&context, request, &response);
        },
        "admin"}},
      {"PurgeState",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::PurgeStateRequest request;
          request.set_scenario(kScenario);
          request.set_object_key("site-2");
          v1::PurgeStateResponse response;
          return admin.PurgeState(&context, request, &response);
        },
        "admin"}},
      {"DescribeCluster",
       {[&](const std::string& token) {
          grpc::ClientContext context;
          Authorize(context, token);
          v1::DescribeClusterResponse response;
          return admin.DescribeCluster(&context, {}, &response);
        },
        "admin"}},
  };
  const std::map<std::string, std::string> callers = {{"", "none"},
                                                      {"t-bogus", "bogus"},
                                                      {"t-agent-1", "agent"},
                                                      {"t-reader", "reader"},
                                                      {"t-admin", "admin"}};
  for (const auto& [name, rpc] : rpcs) {
    for (const auto& [token, role] : callers) {
      SCOPED_TRACE(absl::StrCat(name, " as ", role));
      grpc::Status status = rpc.first(token);
      if (role == "none" || role == "bogus") {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
      } else if (role == rpc.second) {
        EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << status.error_message();
        EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("lacks the role ", rpc.second)));
      }
    }
  }
  // Health stays open.
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(cluster_->process("n1").address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_TRUE(health->Check(&context, {}, &response).ok());
}

TEST_F(AuthTest, AnAgentCannotVoteAsAnother) {
  v1::StateService::Stub& state = cluster_->state("n1");
  grpc::ClientContext first;
  Authorize(first, "t-agent-1");
  v1::ReportStateResponse written;
  ASSERT_TRUE(
      state.ReportState(&first, ReportRequest("site-7", "agent-1", "attack"), &written).ok());

  // Unary: refused, naming the field.
  grpc::ClientContext spoof;
  Authorize(spoof, "t-agent-1");
  v1::ReportStateResponse response;
  grpc::Status status =
      state.ReportState(&spoof, ReportRequest("site-7", "agent-2", "calm"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("agent_id: \"agent-2\" is not the principal"));
  // Streaming: the stream ends at the spoofed request.
  grpc::ClientContext stream_context;
  Authorize(stream_context, "t-agent-1");
  auto stream = state.ReportStates(&stream_context);
  stream->Write(ReportRequest("site-7", "agent-2", "calm"));
  stream->WritesDone();
  while (stream->Read(&response)) {
  }
  status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("request 0: agent_id"));
  // A batch: refused whole, naming the report, even though its first report is agent-1's own.
  grpc::ClientContext batch_context;
  Authorize(batch_context, "t-agent-1");
  v1::ReportBatchRequest batch;
  *batch.add_reports() = ReportRequest("site-8", "agent-1", "calm");
  *batch.add_reports() = ReportRequest("site-7", "agent-2", "calm");
  v1::ReportBatchResponse batch_response;
  status = state.ReportBatch(&batch_context, batch, &batch_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("reports[1].agent_id: \"agent-2\" is not"));

  // One vote, agent-1's, and nothing else was written.
  v1::GetStateResponse got;
  ASSERT_TRUE(Get("t-reader", "site-7", &got, written.token()).ok());
  ASSERT_EQ(got.state().votes_size(), 1);
  EXPECT_EQ(got.state().votes(0).agent_id(), "agent-1");
  EXPECT_EQ(got.state().tally().at("attack"), 1);
  auto client = KafkaTestClient::Create(KafkaBootstrapOrDie());
  ASSERT_TRUE(client.ok());
  auto records = (*client)->ReadAll(absl::StrCat(cluster_->app(), ".", kScenario, ".reports"), 2);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1u);
}

TEST_F(AuthTest, SighupReloadsTheTokenFileAndABadFileKeepsTheOldTokens) {
  v1::GetStateResponse response;
  EXPECT_EQ(Get("t-late", "x", &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  WriteTokens(TokenLine("t-admin", "admin-1", "admin") + TokenLine("t-late", "late", "reader"));
  cluster_->process("n1").Signal(SIGHUP);
  EXPECT_TRUE(WaitFor(
      [&] { return Get("t-late", "x", &response).error_code() == grpc::StatusCode::NOT_FOUND; },
      absl::Seconds(30)));
  EXPECT_EQ(Get("t-reader", "x", &response).error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << "a token removed from the file stops working";

  WriteTokens("not a token line\n");
  cluster_->process("n1").Signal(SIGHUP);
  EXPECT_TRUE(WaitFor(
      [&] { return cluster_->process("n1").Log().find("auth reload failed") != std::string::npos; },
      absl::Seconds(30)));
  EXPECT_EQ(Get("t-late", "x", &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Limits with auth off: every caller is the principal "".
class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<TestCluster>(
        KafkaBootstrapOrDie(), 2,
        "reports_per_second: 0.2 report_burst: 3 max_watches: 2 max_request_bytes: 4096");
    ASSERT_TRUE(cluster_->StartNode("n1").ok());
    ASSERT_TRUE(cluster_->WaitAllActive("n1", {"n1"})) << cluster_->Logs();
  }
  void TearDown() override {
    if (HasFailure()) std::cout << cluster_->Logs() << std::endl;
  }
  grpc::Status Report(v1::ReportStateRequest request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ReportStateResponse response;
    return cluster_->state("n1").ReportState(&context, request, &response);
  }
  std::unique_ptr<TestCluster> cluster_;
};

TEST_F(LimitsTest, ReportsBeyondTheBurstAreRefusedUntilTheBucketRefills) {
  v1::ReportStateRequest request = ReportRequest("k", "a", "up");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Report(request).ok()) << i;
  grpc::Status refused = Report(request);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("rate limit: principal \"\" may send 0.2"));
}

TEST_F(LimitsTest, ABatchTakesATokenAReportAndOneBeyondTheBurstIsRefusedAsTooLarge) {
  auto batch = [&](int size) {
    v1::ReportBatchRequest request;
    for (int i = 0; i < size; ++i) *request.add_reports() = ReportRequest("k", "a", "up");
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ReportBatchResponse response;
    return cluster_->state("n1").ReportBatch(&context, request, &response);
  };
  grpc::Status too_large = batch(4);
  EXPECT_EQ(too_large.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_large.error_message(),
              HasSubstr("reports: 4 reports in one request, more than the burst of 3"));
  ASSERT_TRUE(batch(2).ok()) << "the refused batch took no token";
  grpc::Status refused = batch(2);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("rate limit: principal \"\""));
  EXPECT_TRUE(Report(ReportRequest("k", "a", "up")).ok()) << "one token was left";
}

TEST_F(LimitsTest, OversizedRequestsAreRefusedAndTheRouterKeepsServing) {
  v1::ReportStateRequest request = ReportRequest("k", "a", "up");
  for (int i = 0; i < 30; ++i) {
    (*request.mutable_attributes())[absl::StrCat("key-", i)] = std::string(200, 'v');
  }
  EXPECT_EQ(Report(request).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(cluster_->Describe("n1").ok());
}

TEST_F(LimitsTest, WatchesBeyondTheLimitAreRefusedUntilOneCloses) {
  v1::WatchStateRequest request;
  request.set_scenario(kScenario);
  auto open = [&](grpc::ClientContext& context, v1::WatchStateResponse* first) {
    auto reader = cluster_->state("n1").WatchState(&context, request);
    bool got = reader->Read(first);  // the first progress message, or the end
    return std::make_pair(std::move(reader), got);
  };
  grpc::ClientContext c1, c2;
  v1::WatchStateResponse response;
  auto [w1, ok1] = open(c1, &response);
  auto [w2, ok2] = open(c2, &response);
  ASSERT_TRUE(ok1 && ok2);
  grpc::ClientContext c3;
  auto [w3, ok3] = open(c3, &response);
  EXPECT_FALSE(ok3);
  grpc::Status refused = w3->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("already has 2 watches open"));
  c1.TryCancel();
  w1->Finish();
  // The slot frees once the router has seen the cancel.
  EXPECT_TRUE(WaitFor(
      [&] {
        grpc::ClientContext c4;
        c4.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        auto [w4, ok4] = open(c4, &response);
        c4.TryCancel();
        w4->Finish();
        return ok4;
      },
      absl::Seconds(30)));
  c2.TryCancel();
  w2->Finish();
}

}  // namespace
}  // namespace tally::test
