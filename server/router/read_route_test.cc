#include "server/router/read_route.h"

#include "gtest/gtest.h"
#include "server/router/fake_routes.h"

namespace tally::router {
namespace {

using internal::v1::SHARD_ROLE_ACTIVE;
using internal::v1::SHARD_ROLE_RESTORING;
using internal::v1::SHARD_ROLE_STANDBY;

class ReadRouteTest : public ::testing::Test {
 protected:
  ReadRouteTest() {
    routes_.Hold("active", active_, 0, SHARD_ROLE_ACTIVE);
    routes_.Hold("far", far_, 0, SHARD_ROLE_STANDBY, /*lag=*/50);
    routes_.Hold("near", near_, 0, SHARD_ROLE_STANDBY, /*lag=*/5);
    routes_.Publish();
  }

  // The copies a route tries, in order, if each fails as unreachable.
  std::vector<ShardClient*> Order(ReadRoute& route) {
    std::vector<ShardClient*> order;
    while (std::optional<ReadRoute::Attempt> attempt = route.Next()) {
      order.push_back(attempt->client);
      EXPECT_FALSE(route.Settled(*attempt, absl::UnavailableError("down")));
    }
    return order;
  }

  const std::string scenario_ = "demo";
  const absl::Time deadline_ = absl::Now() + absl::Seconds(10);
  std::shared_ptr<FakeShardClient> active_ = std::make_shared<FakeShardClient>(nullptr);
  std::shared_ptr<FakeShardClient> far_ = std::make_shared<FakeShardClient>(nullptr);
  std::shared_ptr<FakeShardClient> near_ = std::make_shared<FakeShardClient>(nullptr);
  FakeRoutes routes_;
};

TEST_F(ReadRouteTest, ActiveOnlyReadTriesTheActiveWithTheWholeDeadline) {
  ReadRoute route(scenario_, 0, /*max_lag=*/0, deadline_, routes_.Current());
  std::optional<ReadRoute::Attempt> attempt = route.Next();
  ASSERT_TRUE(attempt.has_value());
  EXPECT_EQ(attempt->client, active_.get());
  EXPECT_EQ(attempt->deadline, deadline_);
  EXPECT_FALSE(route.Settled(*attempt, absl::AbortedError("node active does not hold it")));
  EXPECT_FALSE(route.Next().has_value());
  EXPECT_FALSE(active_->Unreachable(absl::Now())) << "ABORTED is not unreachable";
  absl::Status error = route.LastError();
  EXPECT_EQ(error.code(), absl::StatusCode::kUnavailable) << "ABORTED stays internal";
  EXPECT_EQ(error.message(), "node active does not hold it; retry");
}

TEST_F(ReadRouteTest, LagBoundedReadSlicesTheActiveThenTriesStandbysLeastLagFirst) {
  ReadRoute route(scenario_, 0, /*max_lag=*/100, deadline_, routes_.Current());
  std::optional<ReadRoute::Attempt> first = route.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->client, active_.get());
  EXPECT_LE(first->deadline, absl::Now() + kAttemptTimeout + absl::Milliseconds(1));  // as below
  EXPECT_FALSE(route.Settled(*first, absl::DeadlineExceededError("slice ran out")));
  EXPECT_TRUE(active_->Unreachable(absl::Now())) << "its slice ran out";
  std::optional<ReadRoute::Attempt> second = route.Next();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->client, near_.get());
  EXPECT_FALSE(route.Settled(*second, absl::AbortedError("lag grew")));
  std::optional<ReadRoute::Attempt> last = route.Next();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->client, far_.get());
  EXPECT_EQ(last->deadline, deadline_) << "no other copy could answer instead";
  EXPECT_TRUE(route.Settled(*last, absl::OkStatus()));
}

TEST_F(ReadRouteTest, StandbysBeyondTheLagBoundAreNotTried) {
  ReadRoute route(scenario_, 0, /*max_lag=*/10, deadline_, routes_.Current());
  EXPECT_EQ(Order(route), (std::vector<ShardClient*>{active_.get(), near_.get()}));
}

TEST_F(ReadRouteTest, UnreachableCopiesAreTriedLastUntilTheirTimeIsOver) {
  ReadRoute first(scenario_, 0, /*max_lag=*/100, deadline_, routes_.Current());
  EXPECT_EQ(Order(first), (std::vector<ShardClient*>{active_.get(), near_.get(), far_.get()}));
  // All three are marked now; near recovers.
  near_->MarkUnreachable(absl::InfinitePast());
  ReadRoute second(scenario_, 0, /*max_lag=*/100, deadline_, routes_.Current());
  EXPECT_EQ(Order(second), (std::vector<ShardClient*>{near_.get(), far_.get(), active_.get()}));
  // A read that only the active may answer still tries it.
  ReadRoute fresh(scenario_, 0, /*max_lag=*/0, deadline_, routes_.Current());
  EXPECT_EQ(Order(fresh), (std::vector<ShardClient*>{active_.get()}));
}

TEST_F(ReadRouteTest, NonRetryableErrorsAndDeadlineOfTheLastCopySettleTheRead) {
  ReadRoute route(scenario_, 0, /*max_lag=*/0, deadline_, routes_.Current());
  std::optional<ReadRoute::Attempt> attempt = route.Next();
  ASSERT_TRUE(attempt.has_value());
  EXPECT_TRUE(route.Settled(*attempt, absl::DeadlineExceededError("offset 9 not applied")));
  EXPECT_TRUE(route.Settled(*attempt, absl::InternalError("disk")));
}

TEST_F(ReadRouteTest, NoHolderOrARestoringOneIsNamedInTheError) {
  ReadRoute nobody(scenario_, 7, /*max_lag=*/0, deadline_, routes_.Current());
  EXPECT_FALSE(nobody.Next().has_value());
  EXPECT_EQ(nobody.LastError(),
            absl::UnavailableError("no alive node holds partition 7 of scenario demo; retry"));

  routes_.Hold("new", std::make_shared<FakeShardClient>(nullptr), 7, SHARD_ROLE_RESTORING);
  routes_.Publish();
  nobody.Retry(routes_.Current());
  EXPECT_FALSE(nobody.Next().has_value());
  EXPECT_EQ(nobody.LastError(),
            absl::UnavailableError("partition 7 of scenario demo is restoring on node new; retry"));
}

TEST_F(ReadRouteTest, RetryOnANewerTableTriesItsCopies) {
  ReadRoute route(scenario_, 1, /*max_lag=*/0, deadline_, routes_.Current());
  EXPECT_FALSE(route.Next().has_value());
  const uint64_t seen = route.version();
  // absl::Now() may step back by a fraction of a microsecond between calls: a millisecond's slack.
  EXPECT_LE(route.RetryAt(), absl::Now() + kRetrySlice + absl::Milliseconds(1));
  auto owner = std::make_shared<FakeShardClient>(nullptr);
  routes_.Hold("owner", owner, 1, SHARD_ROLE_ACTIVE);
  routes_.Publish();
  route.Retry(routes_.Current());
  EXPECT_GT(route.version(), seen);
  std::optional<ReadRoute::Attempt> attempt = route.Next();
  ASSERT_TRUE(attempt.has_value());
  EXPECT_EQ(attempt->client, owner.get());
}

TEST_F(ReadRouteTest, ExpiredOnceTheDeadlinePassed) {
  EXPECT_FALSE(ReadRoute(scenario_, 0, 0, deadline_, routes_.Current()).Expired());
  EXPECT_TRUE(ReadRoute(scenario_, 0, 0, absl::Now(), routes_.Current()).Expired());
}

}  // namespace
}  // namespace tally::router
