#include "server/auth/limits.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::auth {
namespace {

using ::testing::HasSubstr;

TEST(ReportRateLimiterTest, BurstThenRefillAtTheRatePerPrincipal) {
  absl::Time now = absl::FromUnixSeconds(1000);
  ReportRateLimiter limiter(10, 3, [&] { return now; });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Take("a").ok()) << i;
  absl::Status refused = limiter.Take("a");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("principal \"a\" may send 10 reports/s"));
  EXPECT_THAT(refused.message(), HasSubstr("retry in 100 ms"));
  EXPECT_TRUE(limiter.Take("b").ok()) << "another principal has its own bucket";
  now += absl::Milliseconds(100);
  EXPECT_TRUE(limiter.Take("a").ok());
  EXPECT_FALSE(limiter.Take("a").ok());
  now += absl::Seconds(10);  // refills up to the burst only
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Take("a").ok()) << i;
  EXPECT_FALSE(limiter.Take("a").ok());
}

TEST(ReportRateLimiterTest, ZeroRateIsUnlimited) {
  ReportRateLimiter limiter(0, 1);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.Take("a").ok());
}

TEST(WatchLimiterTest, LeasesCountUntilReleased) {
  WatchLimiter limiter(2);
  std::shared_ptr<void> first, second, third;
  ASSERT_TRUE(limiter.Acquire("a", &first).ok());
  ASSERT_TRUE(limiter.Acquire("a", &second).ok());
  absl::Status refused = limiter.Acquire("a", &third);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("already has 2 watches open"));
  EXPECT_TRUE(limiter.Acquire("b", &third).ok());
  first.reset();
  EXPECT_TRUE(limiter.Acquire("a", &first).ok());
}

}  // namespace
}  // namespace tally::auth
