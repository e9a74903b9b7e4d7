#include "server/router/tokens.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::router {
namespace {

using ::testing::HasSubstr;

TEST(TokensTest, WriteTokenRoundTrips) {
  auto token = ParseWriteToken(EncodeWriteToken({7, 123456789012}), "min_token");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->partition, 7);
  EXPECT_EQ(token->offset, 123456789012);
}

TEST(TokensTest, MalformedWriteTokensNameTheField) {
  for (const std::string bad :
       {"", "w1.", "w1.3", "w1.3.x", "w1.-1.5", "w2.1.1", "w1.1.1.1", "hello"}) {
    auto token = ParseWriteToken(bad, "min_token");
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(token.status().message(), HasSubstr("min_token: ")) << bad;
  }
}

TEST(TokensTest, PageTokenRoundTripsAnyKey) {
  constexpr char kKey[] = "site/\xff\x01 with spaces";
  const std::string key(kKey, sizeof(kKey) - 1);  // bytes that are not UTF-8 included
  auto parsed = ParsePageToken(EncodePageToken(key));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, key);
}

TEST(TokensTest, MalformedPageTokenIsInvalidArgument) {
  for (const std::string bad : {"p1.", "p1.!!!", "x", "w1.1.1"}) {
    auto parsed = ParsePageToken(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("page_token: ")) << bad;
  }
}

}  // namespace
}  // namespace tally::router
