// Router::Get, the asynchronous read, against fake nodes and hand-published routing tables.

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/router/fake_routes.h"
#include "server/router/router.h"
#include "server/router/tokens.h"

namespace tally::router {
namespace {

using internal::v1::SHARD_ROLE_ACTIVE;
using internal::v1::SHARD_ROLE_STANDBY;

class NoSink final : public ReportSink {
 public:
  void Send(const std::string&, int32_t, const std::string&, const std::string&,
            Done done) override {
    done(absl::UnimplementedError("no writes in this test"));
  }
};

// The answer of one Get, delivered once from whichever thread.
struct Answer {
  absl::Notification done;
  absl::StatusOr<v1::GetStateResponse> result;
  Router::ReadDone<v1::GetStateResponse> Callback() {
    return [this](absl::StatusOr<v1::GetStateResponse> r) {
      result = std::move(r);
      done.Notify();
    };
  }
  bool Wait() { return done.WaitForNotificationWithTimeout(absl::Seconds(10)); }
};

class RouterGetTest : public ::testing::Test {
 protected:
  RouterGetTest() {
    config_.set_app_id("tally");
    config::v1::Scenario* scenario = config_.add_scenarios();
    scenario->set_name("demo");
    scenario->set_partitions(1);
    router_ = std::make_unique<Router>(config_, sink_, routes_);
  }

  static v1::GetStateRequest Request(int64_t max_lag = 0) {
    v1::GetStateRequest request;
    request.set_scenario("demo");
    request.set_object_key("site-42");
    request.set_max_lag(max_lag);
    return request;
  }

  // A node that answers `answer` on a thread of its own, as gRPC does.
  static std::shared_ptr<FakeShardClient> Node(absl::StatusOr<internal::v1::ShardGetResponse> answer) {
    return std::make_shared<FakeShardClient>(
        [answer](const internal::v1::ShardGetRequest&, absl::Time) { return answer; },
        /*answer_on_thread=*/true);
  }

  const absl::Time deadline_ = absl::Now() + absl::Seconds(10);
  config::v1::Config config_;
  NoSink sink_;
  FakeRoutes routes_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterGetTest, OwnerAnswersWithItsNameAndLag) {
  routes_.Hold("n1", Node(Found("n1", 0)), 0, SHARD_ROLE_ACTIVE);
  routes_.Publish();
  Answer answer;
  router_->Get(Request(), deadline_, answer.Callback());
  ASSERT_TRUE(answer.Wait());
  ASSERT_TRUE(answer.result.ok()) << answer.result.status();
  EXPECT_EQ(answer.result->served_by(), "n1");
  EXPECT_EQ(answer.result->lag(), 0);
  EXPECT_EQ(answer.result->state().state(), "calm");
}

TEST_F(RouterGetTest, LagBoundedReadIsAnsweredByAStandbyWhileTheActiveIsUnreachable) {
  auto active = Node(absl::UnavailableError("node at n1:7070: connection refused"));
  auto standby = Node(Found("n2", 3));
  routes_.Hold("n1", active, 0, SHARD_ROLE_ACTIVE);
  routes_.Hold("n2", standby, 0, SHARD_ROLE_STANDBY, /*lag=*/3);
  routes_.Publish();

  Answer first;
  router_->Get(Request(/*max_lag=*/10), deadline_, first.Callback());
  ASSERT_TRUE(first.Wait());
  ASSERT_TRUE(first.result.ok()) << first.result.status();
  EXPECT_EQ(first.result->served_by(), "n2");
  EXPECT_EQ(first.result->lag(), 3);
  EXPECT_EQ(active->calls(), 1);

  // The active failed as unreachable: the next lag-bounded read goes to the standby first.
  Answer second;
  router_->Get(Request(/*max_lag=*/10), deadline_, second.Callback());
  ASSERT_TRUE(second.Wait());
  ASSERT_TRUE(second.result.ok()) << second.result.status();
  EXPECT_EQ(second.result->served_by(), "n2");
  EXPECT_EQ(active->calls(), 1);
  EXPECT_EQ(standby->calls(), 2);
}

TEST_F(RouterGetTest, ReadAfterAWriteAsksTheActiveForTheOffsetAndKeepsItsDeadlineError) {
  internal::v1::ShardGetRequest seen;
  auto active = std::make_shared<FakeShardClient>(
      [&seen](const internal::v1::ShardGetRequest& request,
              absl::Time) -> absl::StatusOr<internal::v1::ShardGetResponse> {
        seen = request;
        return absl::DeadlineExceededError(
            "offset 41 of partition 0 not applied before the deadline (applied up to 30)");
      });
  auto standby = Node(Found("n2", 0));
  routes_.Hold("n1", active, 0, SHARD_ROLE_ACTIVE);
  routes_.Hold("n2", standby, 0, SHARD_ROLE_STANDBY);
  routes_.Publish();
  v1::GetStateRequest request = Request(/*max_lag=*/10);
  request.set_min_token(EncodeWriteToken(WriteToken{0, 41}));
  Answer answer;
  router_->Get(request, deadline_, answer.Callback());
  ASSERT_TRUE(answer.Wait());
  EXPECT_EQ(answer.result.status(),
            absl::DeadlineExceededError(
                "offset 41 of partition 0 not applied before the deadline (applied up to 30)"));
  EXPECT_EQ(seen.min_offset(), 41);
  EXPECT_EQ(standby->calls(), 0) << "standbys do not wait for offsets";
}

TEST_F(RouterGetTest, NotTheOwnerWaitsForANewerTableWithoutHoldingTheCaller) {
  // Answers inline: the wait for a table must still not happen on the caller's thread.
  auto old_owner = std::make_shared<FakeShardClient>(
      [](const internal::v1::ShardGetRequest&, absl::Time) {
        return absl::AbortedError("node n1 does not hold partition 0 of scenario demo");
      });
  routes_.Hold("n1", old_owner, 0, SHARD_ROLE_ACTIVE);
  routes_.Publish();
  Answer answer;
  router_->Get(Request(), deadline_, answer.Callback());
  EXPECT_FALSE(answer.done.HasBeenNotified());
  EXPECT_EQ(old_owner->calls(), 1);

  routes_.Forget("n1");
  routes_.Hold("n2", Node(Found("n2", 0)), 0, SHARD_ROLE_ACTIVE);
  routes_.Publish();
  ASSERT_TRUE(answer.Wait());
  ASSERT_TRUE(answer.result.ok()) << answer.result.status();
  EXPECT_EQ(answer.result->served_by(), "n2");
}

TEST_F(RouterGetTest, ReadThatNoNodeHoldsEndsUnavailableAtItsDeadline) {
  routes_.Publish();
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::Milliseconds(300);
  Answer answer;
  router_->Get(Request(), deadline, answer.Callback());
  ASSERT_TRUE(answer.Wait());
  EXPECT_GE(absl::Now() + absl::Milliseconds(1), deadline);  // absl::Now() may step back by ns
  EXPECT_EQ(answer.result.status(),
            absl::UnavailableError("no alive node holds partition 0 of scenario demo; retry"));
}

TEST_F(RouterGetTest, ObjectWithoutStateIsNotFoundNamingTheKey) {
  routes_.Hold("n1", Node(internal::v1::ShardGetResponse()), 0, SHARD_ROLE_ACTIVE);
  routes_.Publish();
  Answer answer;
  router_->Get(Request(), deadline_, answer.Callback());
  ASSERT_TRUE(answer.Wait());
  EXPECT_EQ(answer.result.status(),
            absl::NotFoundError("object_key: \"site-42\" has no state in scenario demo"));
}

TEST_F(RouterGetTest, BadRequestIsRefusedInlineNamingTheField) {
  Answer answer;
  router_->Get(Request(/*max_lag=*/-1), deadline_, answer.Callback());
  ASSERT_TRUE(answer.done.HasBeenNotified());
  EXPECT_EQ(answer.result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(answer.result.status().message(), "max_lag: "))
      << answer.result.status();
}

TEST_F(RouterGetTest, ReadWaitingForATableEndsWhenTheRouterGoesAway) {
  routes_.Publish();
  Answer answer;
  router_->Get(Request(), deadline_, answer.Callback());
  router_.reset();
  ASSERT_TRUE(answer.done.HasBeenNotified());
  EXPECT_EQ(answer.result.status(),
            absl::UnavailableError("no alive node holds partition 0 of scenario demo; retry"));
}

}  // namespace
}  // namespace tally::router
