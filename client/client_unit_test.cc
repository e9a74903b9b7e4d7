// tally::Client against in-process fake routers (no network, no sleeping): retries and
// failover, deadlines, authorization, lazy paging, and the watch's resume contract.

#include <algorithm>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/testing/fake_router.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace tally {
namespace {

using test::FakeRouter;
using test::WatchScript;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::ObjectState State(const std::string& key, const std::string& value) {
  v1::ObjectState state;
  state.set_scenario("demo");
  state.set_object_key(key);
  state.set_state(value);
  return state;
}

v1::WatchStateResponse Change(const std::string& key, const std::string& token) {
  v1::WatchStateResponse event;
  event.mutable_change()->set_object_key(key);
  event.set_resume_token(token);
  return event;
}

v1::ReportBatchRequest Batch(std::vector<std::string> keys) {
  v1::ReportBatchRequest batch;
  for (const std::string& key : keys) {
    v1::ReportStateRequest* report = batch.add_reports();
    report->set_scenario("demo");
    report->set_object_key(key);
    report->set_agent_id("a");
    report->set_state("s");
  }
  return batch;
}

class ClientTest : public ::testing::Test {
 protected:
  // A client of routers r0..r(n-1); its waits are recorded, not slept.
  std::unique_ptr<Client> MakeClient(int routers, ClientOptions options = {}) {
    std::vector<std::string> endpoints;
    for (int i = 0; i < routers; ++i) {
      routers_.push_back(std::make_unique<FakeRouter>());
      endpoints.push_back(absl::StrCat("r", i));
    }
    options.channel_factory = [this](const std::string& endpoint) {
      return routers_[std::stoi(endpoint.substr(1))]->server->InProcessChannel({});
    };
    options.sleep = [this](absl::Duration d) {
      absl::MutexLock lock(&mu_);
      sleeps_.push_back(d);
    };
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(std::move(endpoints), std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  std::vector<absl::Duration> Sleeps() {
    absl::MutexLock lock(&mu_);
    return sleeps_;
  }

  static grpc::Status Unavailable() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "router is going away");
  }

  std::vector<std::unique_ptr<FakeRouter>> routers_;
  absl::Mutex mu_;
  std::vector<absl::Duration> sleeps_ ABSL_GUARDED_BY(mu_);
};

TEST(RetryPolicyTest, BackoffGrowsByTheMultiplierUpToTheCapWithinTheJitter) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Milliseconds(100);
  policy.max_backoff = absl::Seconds(1);
  policy.multiplier = 2;
  policy.jitter = 0.2;
  absl::BitGen rng;
  for (int i = 0; i < 200; ++i) {
    absl::Duration first = BackoffDelay(policy, 1, rng);
    EXPECT_GE(first, absl::Milliseconds(80));
    EXPECT_LE(first, absl::Milliseconds(120));
    absl::Duration third = BackoffDelay(policy, 3, rng);
    EXPECT_GE(third, absl::Milliseconds(320));
    EXPECT_LE(third, absl::Milliseconds(480));
    absl::Duration capped = BackoffDelay(policy, 60, rng);  // 2^59 * 100 ms, capped
    EXPECT_GE(capped, absl::Milliseconds(800));
    EXPECT_LE(capped, absl::Milliseconds(1200));
  }
  policy.jitter = 0;
  EXPECT_EQ(BackoffDelay(policy, 2, rng), absl::Milliseconds(200));
}

TEST(RetryPolicyTest, OnlyUnavailableIsRetried) {
  EXPECT_TRUE(IsRetryable(absl::UnavailableError("x")));
  EXPECT_FALSE(IsRetryable(absl::NotFoundError("x")));
  EXPECT_FALSE(IsRetryable(absl::InvalidArgumentError("x")));
  EXPECT_FALSE(IsRetryable(absl::FailedPreconditionError("x")));
  EXPECT_FALSE(IsRetryable(absl::DeadlineExceededError("x")));
}

TEST_F(ClientTest, CreateRefusesUnusableEndpointsAndOptions) {
  EXPECT_THAT(Client::Create({}).status().message(), HasSubstr("routers: at least one"));
  EXPECT_EQ(Client::Create({""}).status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions options;
  options.retry.max_attempts = 0;
  EXPECT_THAT(Client::Create({"x:1"}, options).status().message(), HasSubstr("retry.max_attempts"));
  options = {};
  options.default_timeout = absl::ZeroDuration();
  EXPECT_THAT(Client::Create({"x:1"}, options).status().message(), HasSubstr("default_timeout"));
}

TEST_F(ClientTest, UnavailableRouterIsSkippedAfterABackoffAndTheNextOneSticks) {
  auto client = MakeClient(3);
  routers_[0]->state.fail_with = Unavailable();
  absl::StatusOr<std::string> token = client->Report("demo", "k1", "a", "s");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "w1.0.k1");
  EXPECT_EQ(routers_[0]->state.Calls(), 1);
  EXPECT_EQ(routers_[1]->state.Calls(), 1);
  ASSERT_EQ(Sleeps().size(), 1u);
  EXPECT_GT(Sleeps()[0], absl::ZeroDuration());
  // The next call starts with the router that answered.
  ASSERT_TRUE(client->Report("demo", "k2", "a", "s").ok());
  EXPECT_EQ(routers_[0]->state.Calls(), 1);
  EXPECT_EQ(routers_[1]->state.Calls(), 2);
}

TEST_F(ClientTest, GivesUpWithUnavailableAfterMaxAttemptsWithGrowingBackoff) {
  ClientOptions options;
  options.retry.max_attempts = 4;
  options.retry.jitter = 0;
  auto client = MakeClient(2, options);
  routers_[0]->state.fail_with = Unavailable();
  routers_[1]->state.fail_with = Unavailable();
  absl::StatusOr<v1::GetStateResponse> got = client->Get("demo", "k");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("GetState: no router answered (4 attempts)"));
  EXPECT_THAT(got.status().message(), HasSubstr("router r1: router is going away"));
  EXPECT_EQ(routers_[0]->state.Calls(), 2);
  EXPECT_EQ(routers_[1]->state.Calls(), 2);
  EXPECT_THAT(Sleeps(), ElementsAre(absl::Milliseconds(50), absl::Milliseconds(100),
                                    absl::Milliseconds(200)));
}

TEST_F(ClientTest, AnswersOtherThanUnavailableAreNotRetried) {
  auto client = MakeClient(2);
  for (auto code : {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::FAILED_PRECONDITION,
                    grpc::StatusCode::PERMISSION_DENIED}) {
    routers_[0]->state.fail_with = grpc::Status(code, "object_key: must not be empty");
    absl::StatusOr<std::string> token = client->Report("demo", "", "a", "s");
    EXPECT_EQ(static_cast<int>(token.status().code()), static_cast<int>(code));
    EXPECT_EQ(token.status().message(), "router r0: object_key: must not be empty");
  }
  routers_[0]->state.fail_with = grpc::Status::OK;
  absl::StatusOr<v1::GetStateResponse> got = client->Get("demo", "missing");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(routers_[1]->state.Calls(), 0);
  EXPECT_TRUE(Sleeps().empty());
}

TEST_F(ClientTest, NoRetryThatWouldOutliveTheDeadline) {
  ClientOptions options;
  options.retry.initial_backoff = absl::Seconds(30);
  options.retry.max_backoff = absl::Seconds(60);
  auto client = MakeClient(2, options);
  routers_[0]->state.fail_with = Unavailable();
  absl::StatusOr<std::string> token =
      client->Report("demo", "k", "a", "s", {.timeout = absl::Seconds(5)});
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(token.status().message(), HasSubstr("(1 attempt)"));
  EXPECT_EQ(routers_[1]->state.Calls(), 0);
  EXPECT_TRUE(Sleeps().empty());
}

TEST_F(ClientTest, EveryCallCarriesItsDeadlineAndTheBearerToken) {
  ClientOptions options;
  options.bearer_token = "s3cret";
  options.default_timeout = absl::Seconds(42);
  auto client = MakeClient(1, options);
  absl::Time before = absl::Now();
  ASSERT_TRUE(client->Report("demo", "k", "a", "s").ok());
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    EXPECT_EQ(routers_[0]->state.authorization, "Bearer s3cret");
    EXPECT_GE(routers_[0]->state.deadline, before + absl::Seconds(41));
    // gRPC carries deadlines with millisecond resolution.
    EXPECT_LE(routers_[0]->state.deadline, absl::Now() + absl::Seconds(42) + absl::Milliseconds(5));
  }
  before = absl::Now();
  EXPECT_FALSE(client->Get("demo", "k", {.timeout = absl::Seconds(3)}).ok());
  absl::MutexLock lock(&routers_[0]->state.mu);
  EXPECT_GE(routers_[0]->state.deadline, before + absl::Seconds(2));
  EXPECT_LE(routers_[0]->state.deadline, absl::Now() + absl::Seconds(3) + absl::Milliseconds(5));
}

TEST_F(ClientTest, ReportBatchIsRetriedWholeOnTheNextRouterAndAnswersTheTokensInOrder) {
  auto client = MakeClient(2);
  routers_[0]->state.fail_with = Unavailable();
  absl::StatusOr<std::vector<std::string>> tokens = client->ReportBatch(Batch({"k1", "k2", "k3"}));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ElementsAre("w1.0.k1", "w1.0.k2", "w1.0.k3"));
  EXPECT_EQ(Sleeps().size(), 1u);
  for (const auto& router : routers_) {
    absl::MutexLock lock(&router->state.mu);
    ASSERT_EQ(router->state.batches.size(), 1u);  // one call each, carrying the whole batch
    EXPECT_EQ(router->state.batches[0].reports_size(), 3);
    EXPECT_EQ(router->state.batches[0].reports(2).object_key(), "k3");
  }
  // The next call starts with the router that answered.
  ASSERT_TRUE(client->ReportBatch(Batch({"k4", "k5"})).ok());
  EXPECT_EQ(routers_[0]->state.Calls(), 1);
  EXPECT_EQ(routers_[1]->state.Calls(), 2);
}

TEST_F(ClientTest, ReportBatchRefusalsNameTheReportAndAreNotRetried) {
  auto client = MakeClient(2);
  v1::ReportBatchRequest batch = Batch({"k1", "k2", "k3"});
  batch.mutable_reports(1)->clear_state();
  absl::StatusOr<std::vector<std::string>> tokens = client->ReportBatch(batch);
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokens.status().message(), "router r0: reports[1].state: must not be empty");
  // A router older than ReportBatch: its answer is returned, not retried elsewhere.
  routers_[0]->state.fail_with = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
  tokens = client->ReportBatch(Batch({"k1"}));
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(routers_[0]->state.Calls(), 2);
  EXPECT_EQ(routers_[1]->state.Calls(), 0);
  EXPECT_TRUE(Sleeps().empty());
}

TEST_F(ClientTest, GetPassesMinTokenAndAdminCallsReturnTheirTokens) {
  auto client = MakeClient(1);
  routers_[0]->state.states["k"] = State("k", "attack");
  absl::StatusOr<v1::GetStateResponse> got = client->Get("demo", "k", {.min_token = "w1.2.3"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state().state(), "attack");
  EXPECT_EQ(got->served_by(), "min_token=w1.2.3");
  v1::SetStateRequest set;
  set.set_state("ok");
  set.set_pin(true);
  EXPECT_EQ(*client->Set(set), "set:ok:1");
  EXPECT_EQ(*client->Purge("demo", "k", "why"), "purge:k:why");
  absl::StatusOr<v1::DescribeClusterResponse> cluster = client->Describe();
  ASSERT_TRUE(cluster.ok());
  EXPECT_EQ(cluster->nodes(0).id(), "n1");
}

TEST_F(ClientTest, ListFetchesPagesLazilyAndSeesEveryStateOnce) {
  auto client = MakeClient(1);
  for (int i = 0; i < 10; ++i) {
    std::string key = absl::StrCat("site-", i);
    routers_[0]->state.states[key] = State(key, "ok");
  }
  routers_[0]->state.states["other"] = State("other", "ok");
  StateList list = client->List("demo", "site-", {.page_size = 4});
  EXPECT_EQ(routers_[0]->state.Calls(), 0);  // nothing fetched before iteration
  std::vector<std::string> keys;
  for (const v1::ObjectState& state : list) {
    keys.push_back(state.object_key());
    // Pages come as iteration reaches them: 4 states a page.
    EXPECT_EQ(list.pages_fetched(), static_cast<int>(keys.size() + 3) / 4);
  }
  EXPECT_TRUE(list.status().ok());
  EXPECT_EQ(keys.size(), 10u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  absl::MutexLock lock(&routers_[0]->state.mu);
  EXPECT_THAT(routers_[0]->state.page_tokens, ElementsAre("", "site-3", "site-7"));
}

TEST_F(ClientTest, ListSkipsEmptyPagesThatCarryAToken) {
  auto client = MakeClient(1);
  routers_[0]->state.empty_pages = true;
  routers_[0]->state.states["a"] = State("a", "ok");
  routers_[0]->state.states["b"] = State("b", "ok");
  std::vector<std::string> keys;
  StateList list = client->List("demo", "", {.page_size = 1});
  for (const v1::ObjectState& state : list) keys.push_back(state.object_key());
  EXPECT_THAT(keys, ElementsAre("a", "b"));
  EXPECT_TRUE(list.status().ok());
}

TEST_F(ClientTest, AFailedPageEndsTheListWithItsErrorAndAResumableToken) {
  auto client = MakeClient(1);
  for (const char* key : {"a", "b", "c"}) routers_[0]->state.states[key] = State(key, "ok");
  routers_[0]->state.fail_page_token = "b";
  std::vector<std::string> keys;
  StateList list = client->List("demo", "", {.page_size = 2});
  for (const v1::ObjectState& state : list) keys.push_back(state.object_key());
  EXPECT_THAT(keys, ElementsAre("a", "b"));
  EXPECT_EQ(list.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(list.next_page_token(), "b");
}

TEST_F(ClientTest, EmptyListIsOk) {
  auto client = MakeClient(1);
  StateList list = client->List("demo", "nothing/");
  int n = 0;
  for (const v1::ObjectState& state : list) n += state.object_key().empty() ? 1 : 2;
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(list.status().ok());
}

TEST_F(ClientTest, WatchResumesFromTheLastDeliveredTokenOnTheNextRouter) {
  auto client = MakeClient(2);
  v1::WatchStateResponse initial;
  initial.mutable_initial()->set_object_key("a");
  initial.set_resume_token("t0");
  v1::WatchStateResponse done;
  done.mutable_snapshot_done();
  done.set_resume_token("t1");
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    routers_[0]->state.watch_scripts.push_back({{initial, done, Change("a", "t2")}, Unavailable()});
  }
  {
    absl::MutexLock lock(&routers_[1]->state.mu);
    routers_[1]->state.watch_scripts.push_back(
        {{Change("b", "t3")}, grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "token too old")});
  }
  auto stream = client->Watch("demo", WatchTarget::Prefix("p/"), {.send_initial = true});
  std::vector<std::string> tokens;
  absl::StatusOr<v1::WatchStateResponse> event;
  while ((event = stream->Next()).ok()) tokens.push_back(event->resume_token());
  EXPECT_THAT(tokens, ElementsAre("t0", "t1", "t2", "t3"));
  EXPECT_EQ(event.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(event.status().message(), HasSubstr("token too old"));
  EXPECT_EQ(stream->Next().status().code(), absl::StatusCode::kOutOfRange);  // stays ended
  EXPECT_EQ(stream->resume_token(), "t3");
  EXPECT_EQ(stream->resumes(), 1);
  EXPECT_EQ(Sleeps().size(), 1u);

  absl::MutexLock lock0(&routers_[0]->state.mu);
  ASSERT_EQ(routers_[0]->state.watch_requests.size(), 1u);
  const v1::WatchStateRequest& first = routers_[0]->state.watch_requests[0];
  EXPECT_EQ(first.prefix(), "p/");
  EXPECT_TRUE(first.send_initial());
  EXPECT_EQ(first.resume_token(), "");
  absl::MutexLock lock1(&routers_[1]->state.mu);
  ASSERT_EQ(routers_[1]->state.watch_requests.size(), 1u);
  const v1::WatchStateRequest& resumed = routers_[1]->state.watch_requests[0];
  EXPECT_EQ(resumed.prefix(), "p/");
  EXPECT_EQ(resumed.resume_token(), "t2");
  EXPECT_FALSE(resumed.send_initial());  // the snapshot was complete
}

TEST_F(ClientTest, WatchBrokenBeforeItsFirstEventIsOpenedAgainAsAsked) {
  auto client = MakeClient(1);
  v1::WatchStateResponse initial;
  initial.mutable_initial()->set_object_key("a");  // initial events carry no resume token
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    routers_[0]->state.watch_scripts.push_back({{}, Unavailable()});
    routers_[0]->state.watch_scripts.push_back({{initial}, Unavailable()});
  }
  auto stream = client->Watch("demo", WatchTarget::Key("a"), {.send_initial = true});
  absl::StatusOr<v1::WatchStateResponse> event = stream->Next();
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_TRUE(event->has_initial());
  // Broken mid-snapshot after an initial event: not resumable, the caller must list again.
  event = stream->Next();
  EXPECT_EQ(event.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(event.status().message(), HasSubstr("during its initial snapshot"));
  absl::MutexLock lock(&routers_[0]->state.mu);
  ASSERT_EQ(routers_[0]->state.watch_requests.size(), 2u);
  for (const v1::WatchStateRequest& request : routers_[0]->state.watch_requests) {
    EXPECT_EQ(request.object_key(), "a");
    EXPECT_TRUE(request.send_initial());
    EXPECT_EQ(request.resume_token(), "");
  }
}

TEST_F(ClientTest, WatchClosedForBeingTooSlowEndsWithTheTokenToResumeFrom) {
  auto client = MakeClient(2);
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    routers_[0]->state.watch_scripts.push_back(
        {{Change("a", "t1")}, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too slow")});
  }
  auto stream = client->Watch("demo", WatchTarget::All());
  ASSERT_TRUE(stream->Next().ok());
  absl::StatusOr<v1::WatchStateResponse> end = stream->Next();
  EXPECT_EQ(end.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(stream->resume_token(), "t1");
  EXPECT_EQ(routers_[1]->state.Calls(), 0);  // not retried
}

TEST_F(ClientTest, WatchGivesUpAfterMaxAttemptsThatDeliverNothing) {
  ClientOptions options;
  options.retry.max_attempts = 3;
  auto client = MakeClient(1, options);
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    // An event resets the count of consecutive failures: 1 + 3 attempts in all.
    routers_[0]->state.watch_scripts.push_back({{Change("a", "t1")}, Unavailable()});
  }
  auto stream = client->Watch("demo", WatchTarget::All(), {.resume_token = "t0"});
  ASSERT_TRUE(stream->Next().ok());
  absl::StatusOr<v1::WatchStateResponse> end = stream->Next();
  EXPECT_EQ(end.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(end.status().message(), HasSubstr("WatchState: no router answered (3 attempts)"));
  EXPECT_EQ(routers_[0]->state.Calls(), 4);
  absl::MutexLock lock(&routers_[0]->state.mu);
  EXPECT_EQ(routers_[0]->state.watch_requests[0].resume_token(), "t0");
  EXPECT_EQ(routers_[0]->state.watch_requests[3].resume_token(), "t1");
}

TEST_F(ClientTest, CancelEndsABlockedWatch) {
  auto client = MakeClient(1);
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    routers_[0]->state.watch_scripts.push_back(
        {{Change("a", "t1")}, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "hang")});
  }
  auto stream = client->Watch("demo", WatchTarget::All());
  ASSERT_TRUE(stream->Next().ok());
  std::thread canceller([&] { stream->Cancel(); });
  absl::StatusOr<v1::WatchStateResponse> end = stream->Next();
  canceller.join();
  EXPECT_EQ(end.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(ClientTest, CallbackWatchStopsWhenTheCallbackSaysSo) {
  auto client = MakeClient(1);
  {
    absl::MutexLock lock(&routers_[0]->state.mu);
    routers_[0]->state.watch_scripts.push_back(
        {{Change("a", "t1"), Change("b", "t2"), Change("c", "t3")}, Unavailable()});
  }
  std::vector<std::string> keys;
  absl::Status status =
      client->Watch("demo", WatchTarget::All(), {}, [&](const v1::WatchStateResponse& event) {
        keys.push_back(event.change().object_key());
        return keys.size() < 2;
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(keys, ElementsAre("a", "b"));
}

}  // namespace
}  // namespace tally
