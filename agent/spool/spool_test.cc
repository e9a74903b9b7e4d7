#include "agent/spool/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/spool/frame.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tally::agent {
namespace {

namespace fs = std::filesystem;

tally::v1::ReportStateRequest Report(const std::string& object, const std::string& state) {
  tally::v1::ReportStateRequest r;
  r.set_scenario("web");
  r.set_object_key(object);
  r.set_agent_id("agent-1");
  r.set_state(state);
  return r;
}

// "object=state" of each report, for readable comparisons.
std::vector<std::string> Names(const std::vector<SpooledReport>& reports) {
  std::vector<std::string> out;
  for (const SpooledReport& r : reports) {
    out.push_back(absl::StrCat(r.report.object_key(), "=", r.report.state()));
  }
  return out;
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".seg") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class SpoolTest : public ::testing::Test {
 protected:
  SpoolOptions Options() {
    SpoolOptions o;
    o.dir = dir_.path() + "/spool";
    return o;
  }
  std::unique_ptr<Spool> OpenOrDie(SpoolOptions options) {
    auto spool = Spool::Open(std::move(options));
    EXPECT_TRUE(spool.ok()) << spool.status();
    return spool.ok() ? std::move(*spool) : nullptr;
  }

  test::TempDir dir_;
};

TEST_F(SpoolTest, ReopenKeepsAppendedReportsInOrder) {
  std::vector<std::string> expected;
  {
    auto spool = OpenOrDie(Options());
    ASSERT_NE(spool, nullptr);
    EXPECT_TRUE(spool->empty());
    for (int i = 0; i < 20; ++i) {
      std::string object = absl::StrCat("site-", i % 3);
      std::string state = absl::StrCat("s", i);
      ASSERT_TRUE(spool->Append(Report(object, state)).ok());
      expected.push_back(absl::StrCat(object, "=", state));
    }
    EXPECT_EQ(Names(spool->Peek(100)), expected);
  }
  auto reopened = OpenOrDie(Options());
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(Names(reopened->Peek(100)), expected);
  EXPECT_EQ(reopened->Stats().records, 20);
  EXPECT_EQ(reopened->Stats().discarded_bytes, 0);
}

TEST_F(SpoolTest, AcknowledgedReportsStayGoneAfterReopen) {
  {
    auto spool = OpenOrDie(Options());
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 10; ++i)
      ASSERT_TRUE(spool->Append(Report(absl::StrCat("o", i), "up")).ok());
    std::vector<SpooledReport> head = spool->Peek(4);
    ASSERT_EQ(head.size(), 4u);
    ASSERT_TRUE(spool->Acknowledge(head.back().id).ok());
    EXPECT_THAT(Names(spool->Peek(1)), ::testing::ElementsAre("o4=up"));
  }
  auto reopened = OpenOrDie(Options());
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(Names(reopened->Peek(100)),
              ::testing::ElementsAre("o4=up", "o5=up", "o6=up", "o7=up", "o8=up", "o9=up"));
}

TEST_F(SpoolTest, SegmentsRollAndAreDeletedOnceDelivered) {
  SpoolOptions options = Options();
  options.segment_bytes = 128;
  auto spool = OpenOrDie(options);
  ASSERT_NE(spool, nullptr);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(spool->Append(Report(absl::StrCat("o", i), "up")).ok());
  EXPECT_GT(SegmentFiles(options.dir).size(), 3u);
  // Deliver in batches, as the reporter does; everything arrives once, in order.
  std::vector<std::string> delivered;
  while (!spool->empty()) {
    std::vector<SpooledReport> batch = spool->Peek(7);
    ASSERT_FALSE(batch.empty());
    for (const std::string& n : Names(batch)) delivered.push_back(n);
    ASSERT_TRUE(spool->Acknowledge(batch.back().id).ok());
  }
  ASSERT_EQ(delivered.size(), 30u);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(delivered[i], absl::StrCat("o", i, "=up"));
  EXPECT_TRUE(SegmentFiles(options.dir).empty());
  EXPECT_EQ(spool->Stats().bytes, 0);

  // New appends after a full drain start a new segment and survive a reopen.
  ASSERT_TRUE(spool->Append(Report("late", "down")).ok());
  spool.reset();
  auto reopened = OpenOrDie(options);
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(Names(reopened->Peek(100)), ::testing::ElementsAre("late=down"));
}

TEST_F(SpoolTest, TornTailIsCutOffAndAppendsContinue) {
  SpoolOptions options = Options();
  {
    auto spool = OpenOrDie(options);
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(spool->Append(Report(absl::StrCat("o", i), "up")).ok());
  }
  // A crash in the middle of writing a sixth frame.
  std::string payload;
  Report("o5", "up").SerializeToString(&payload);
  std::string frame = spool::EncodeFrame(payload);
  std::vector<std::string> files = SegmentFiles(options.dir);
  ASSERT_EQ(files.size(), 1u);
  const auto size_before = fs::file_size(files[0]);
  {
    int fd = ::open(files[0].c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, frame.data(), frame.size() / 2), static_cast<ssize_t>(frame.size() / 2));
    ::close(fd);
  }
  {
    auto spool = OpenOrDie(options);
    ASSERT_NE(spool, nullptr);
    EXPECT_EQ(spool->Stats().records, 5);
    EXPECT_EQ(spool->Stats().discarded_bytes, static_cast<int64_t>(frame.size() / 2));
    EXPECT_EQ(fs::file_size(files[0]), size_before);
    ASSERT_TRUE(spool->Append(Report("o6", "down")).ok());
  }
  auto reopened = OpenOrDie(options);
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(Names(reopened->Peek(100)),
              ::testing::ElementsAre("o0=up", "o1=up", "o2=up", "o3=up", "o4=up", "o6=down"));
  EXPECT_EQ(reopened->Stats().discarded_bytes, 0);
}

TEST_F(SpoolTest, CorruptLastFrameIsCutOff) {
  SpoolOptions options = Options();
  {
    auto spool = OpenOrDie(options);
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(spool->Append(Report(absl::StrCat("o", i), "up")).ok());
  }
  std::vector<std::string> files = SegmentFiles(options.dir);
  ASSERT_EQ(files.size(), 1u);
  {
    // Flip a byte of the last frame's payload.
    int fd = ::open(files[0].c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    off_t end = ::lseek(fd, 0, SEEK_END);
    char c = 0;
    ASSERT_EQ(::pread(fd, &c, 1, end - 2), 1);
    c = static_cast<char>(c ^ 0x01);
    ASSERT_EQ(::pwrite(fd, &c, 1, end - 2), 1);
    ::close(fd);
  }
  auto spool = OpenOrDie(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_THAT(Names(spool->Peek(100)), ::testing::ElementsAre("o0=up", "o1=up"));
  EXPECT_GT(spool->Stats().discarded_bytes, 0);
}

TEST_F(SpoolTest, SegmentCutShortBeforeItsHeaderIsRemoved) {
  SpoolOptions options = Options();
  {
    auto spool = OpenOrDie(options);
    ASSERT_NE(spool, nullptr);
    ASSERT_TRUE(spool->Append(Report("o0", "up")).ok());
  }
  // A crash right after creating the next segment file.
  {
    std::FILE* f = std::fopen((options.dir + "/00000000000000000002.seg").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("TSP", f);
    std::fclose(f);
  }
  auto spool = OpenOrDie(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Report("o1", "up")).ok());
  EXPECT_THAT(Names(spool->Peek(100)), ::testing::ElementsAre("o0=up", "o1=up"));
}

// The bound, checked against a model: whatever is dropped, the queue stays within max_bytes, is
// in append order, and still holds the latest report of every object.
TEST_F(SpoolTest, FullSpoolDropsOlderReportsOfTheSameObjectOnly) {
  SpoolOptions options = Options();
  options.segment_bytes = 256;
  options.max_bytes = 1024;
  auto spool = OpenOrDie(options);
  ASSERT_NE(spool, nullptr);
  std::vector<std::string> appended;
  std::map<std::string, std::string> latest;
  for (int i = 0; i < 200; ++i) {
    std::string object = absl::StrCat("o", i % 4);
    std::string state = absl::StrCat("v", i);
    ASSERT_TRUE(spool->Append(Report(object, state)).ok()) << i;
    appended.push_back(absl::StrCat(object, "=", state));
    latest[object] = appended.back();
    ASSERT_LE(spool->Stats().bytes, options.max_bytes) << i;
  }
  std::vector<std::string> queued = Names(spool->Peek(1000));
  // A subsequence of what was appended, in order.
  size_t j = 0;
  for (const std::string& q : queued) {
    while (j < appended.size() && appended[j] != q) ++j;
    ASSERT_LT(j, appended.size()) << q << " out of order or never appended";
    ++j;
  }
  for (const auto& [object, name] : latest) EXPECT_THAT(queued, ::testing::Contains(name));
  SpoolStats stats = spool->Stats();
  EXPECT_GT(stats.dropped_superseded, 0);
  EXPECT_EQ(stats.dropped_superseded + stats.records, 200);
  EXPECT_EQ(stats.rejected, 0);

  // And the compacted queue is what a reopen finds.
  spool.reset();
  auto reopened = OpenOrDie(options);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(Names(reopened->Peek(1000)), queued);
}

TEST_F(SpoolTest, FullSpoolRefusesAReportWhenNothingIsSuperseded) {
  SpoolOptions options = Options();
  options.segment_bytes = 256;
  options.max_bytes = 1024;
  auto spool = OpenOrDie(options);
  ASSERT_NE(spool, nullptr);
  int accepted = 0;
  absl::Status status;
  for (int i = 0; i < 100 && status.ok(); ++i) {
    status = spool->Append(Report(absl::StrCat("o", i), "up"));
    if (status.ok()) ++accepted;
  }
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_GT(accepted, 10);
  SpoolStats stats = spool->Stats();
  EXPECT_EQ(stats.rejected, 1);
  EXPECT_EQ(stats.dropped_superseded, 0);
  EXPECT_EQ(stats.records, accepted);
  // A newer report of a queued object still fits: it replaces the older one.
  EXPECT_TRUE(spool->Append(Report("o0", "down")).ok());
  std::vector<std::string> queued = Names(spool->Peek(1000));
  EXPECT_THAT(queued, ::testing::Not(::testing::Contains("o0=up")));
  EXPECT_EQ(queued.back(), "o0=down");
}

TEST_F(SpoolTest, RoomIsMadeFromDeliveredPartOfTheHeadSegmentAcrossReopen) {
  SpoolOptions options = Options();
  options.segment_bytes = 4096;
  options.max_bytes = 4096;
  std::vector<std::string> queued;
  {
    auto spool = OpenOrDie(options);
    ASSERT_NE(spool, nullptr);
    // Distinct objects, so only the delivered prefix can make room.
    int i = 0;
    while (spool->Stats().bytes < 3500) {
      ASSERT_TRUE(spool->Append(Report(absl::StrCat("o", i++), "up")).ok());
    }
    std::vector<SpooledReport> head = spool->Peek(20);
    ASSERT_TRUE(spool->Acknowledge(head.back().id).ok());
    for (int k = 0; k < 20; ++k) {
      ASSERT_TRUE(spool->Append(Report(absl::StrCat("n", k), "up")).ok()) << k;
    }
    EXPECT_EQ(spool->Stats().rejected, 0);
    EXPECT_LE(spool->Stats().bytes, options.max_bytes);
    queued = Names(spool->Peek(1000));
    EXPECT_EQ(queued.front(), "o20=up");
    EXPECT_EQ(queued.back(), "n19=up");
  }
  auto reopened = OpenOrDie(options);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(Names(reopened->Peek(1000)), queued);
}

TEST_F(SpoolTest, RejectsBadOptions) {
  SpoolOptions options = Options();
  options.max_bytes = 10;
  options.segment_bytes = 100;
  EXPECT_TRUE(absl::IsInvalidArgument(Spool::Open(options).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Spool::Open(SpoolOptions{}).status()));
}

}  // namespace
}  // namespace tally::agent
