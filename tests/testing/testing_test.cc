#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unique_name.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

TEST(UniqueNameTest, NamesAreDistinctAndKeepThePrefix) {
  std::set<std::string> names;
  for (int i = 0; i < 1000; ++i) {
    std::string name = UniqueName("tally.test");
    EXPECT_EQ(name.rfind("tally.test-", 0), 0u) << name;
    EXPECT_EQ(name.size(), std::string("tally.test-").size() + 16);
    names.insert(std::move(name));
  }
  EXPECT_EQ(names.size(), 1000u);
}

TEST(UniqueNameTest, IllegalCharactersAreReplacedAndLengthIsBounded) {
  std::string name = UniqueName("a b/c:" + std::string(400, 'x'));
  EXPECT_EQ(name.rfind("a_b_c_x", 0), 0u) << name;
  EXPECT_LE(name.size(), 249u);
  for (char c : name) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')
        << name;
  }
}

TEST(WaitForTest, ReturnsTrueOnceTheConditionHolds) {
  int calls = 0;
  EXPECT_TRUE(WaitFor([&] { return ++calls >= 3; }, absl::Seconds(10)));
  EXPECT_EQ(calls, 3);
}

TEST(WaitForTest, ReturnsFalseAtTheDeadline) {
  const absl::Time start = absl::Now();
  int calls = 0;
  EXPECT_FALSE(WaitFor(
      [&] {
        ++calls;
        return false;
      },
      absl::Milliseconds(100)));
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(100));
  EXPECT_LT(waited, absl::Seconds(5));
  EXPECT_GT(calls, 2);  // it polled, it did not sleep through the deadline once
}

TEST(TempDirTest, CreatesAnEmptyDirectoryAndRemovesItWithItsContents) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    ASSERT_TRUE(std::filesystem::is_directory(path));
    EXPECT_TRUE(std::filesystem::is_empty(path));
    std::filesystem::create_directories(path + "/a/b");
    std::ofstream(path + "/a/b/file") << "data";
    ASSERT_TRUE(std::filesystem::exists(path + "/a/b/file"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(TempDirTest, TwoDirectoriesDiffer) {
  TempDir a;
  TempDir b;
  EXPECT_NE(a.path(), b.path());
}

TEST(TempDirTest, MoveTransfersTheDirectory) {
  std::string path;
  std::optional<TempDir> target;
  {
    TempDir source;
    path = source.path();
    target.emplace(std::move(source));
  }  // the moved-from source is destroyed here and must not remove the directory
  EXPECT_TRUE(std::filesystem::is_directory(path));
  EXPECT_EQ(target->path(), path);
  target.reset();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace tally::test
