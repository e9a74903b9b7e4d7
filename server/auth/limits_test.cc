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

TEST(ReportRateLimiterTest, BatchTakesATokenAReportOrNone) {
  absl::Time now = absl::FromUnixSeconds(1000);
  ReportRateLimiter limiter(10, 5, [&] { return now; });
  EXPECT_TRUE(limiter.Take("a", 4).ok());
  absl::Status refused = limiter.Take("a", 2);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("retry in 100 ms")) << "one token left, two wanted";
  EXPECT_TRUE(limiter.Take("a", 1).ok()) << "the refused batch took nothing";
  now += absl::Milliseconds(200);
  EXPECT_TRUE(limiter.Take("a", 2).ok());

  absl::Status never = limiter.Take("b", 6);
  EXPECT_EQ(never.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(never.message(), HasSubstr("6 reports in one request, more than the burst of 5"));
  EXPECT_THAT(never.message(), HasSubstr("router.report_burst"));
  EXPECT_TRUE(limiter.Take("b", 5).ok()) << "a full burst fits";
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
