#include "server/watch/resume_token.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::watch {
namespace {

using ::testing::HasSubstr;

TEST(ResumeTokenTest, RoundTrips) {
  auto parsed = ParseResumeToken(EncodeResumeToken({"demo", {0, 17, 123456789}}), "demo", 3);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->offsets, (std::vector<int64_t>{0, 17, 123456789}));
}

TEST(ResumeTokenTest, RefusesTokensOfAnotherScenarioOrShape) {
  std::string token = EncodeResumeToken({"demo", {1, 2}});
  EXPECT_THAT(ParseResumeToken(token, "other", 2).status().message(),
              HasSubstr("resume_token: belongs to scenario \"demo\""));
  EXPECT_THAT(ParseResumeToken(token, "demo", 3).status().message(),
              HasSubstr("resume_token: has 2 partitions"));
  for (const std::string bad : {"", "r1.", "r1.%%%", "w1.0.1", "r1.AAAA"}) {
    auto parsed = ParseResumeToken(bad, "demo", 2);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("resume_token")) << bad;
  }
}

}  // namespace
}  // namespace tally::watch
