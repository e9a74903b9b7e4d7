#include "server/common/log.h"

#include <string>

#include "gtest/gtest.h"

namespace tally::log {
namespace {

std::string Value(std::string_view v) {
  std::string out;
  AppendValue(out, v);
  return out;
}

TEST(LogTest, PlainValuesAreWrittenBare) {
  EXPECT_EQ(Value("site-42"), "site-42");
  EXPECT_EQ(Value("127.0.0.1:7070"), "127.0.0.1:7070");
}

TEST(LogTest, ValuesWithSpacesQuotesOrControlsAreQuotedAndEscaped) {
  EXPECT_EQ(Value(""), "\"\"");
  EXPECT_EQ(Value("under attack"), "\"under attack\"");
  EXPECT_EQ(Value("a=b"), "\"a=b\"");
  EXPECT_EQ(Value("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(Value("line\nbreak"), "\"line\\nbreak\"");
  EXPECT_EQ(Value(std::string("nul\0x", 5)), "\"nul\\x00x\"");
}

TEST(LogTest, LevelFilterDropsLowerLevels) {
  SetLevel(Level::kWarn);
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kError));
  SetLevel(Level::kInfo);
  EXPECT_TRUE(Enabled(Level::kInfo));
  EXPECT_FALSE(Enabled(Level::kDebug));
}

}  // namespace
}  // namespace tally::log
