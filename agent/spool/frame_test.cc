#include "agent/spool/frame.h"

#include <string>

#include "gtest/gtest.h"

namespace tally::agent::spool {
namespace {

TEST(FrameTest, DecodesWhatWasEncoded) {
  std::string frame = EncodeFrame("hello");
  std::string data = frame + "trailing bytes of the next frame";
  DecodedFrame d = DecodeFrame(data);
  ASSERT_EQ(d.status, FrameStatus::kOk);
  EXPECT_EQ(d.payload, "hello");
  EXPECT_EQ(d.size, frame.size());
}

TEST(FrameTest, EmptyPayloadRoundTrips) {
  DecodedFrame d = DecodeFrame(EncodeFrame(""));
  ASSERT_EQ(d.status, FrameStatus::kOk);
  EXPECT_EQ(d.payload, "");
  EXPECT_EQ(d.size, kFrameHeaderSize);
}

TEST(FrameTest, CutShortFrameIsIncomplete) {
  std::string frame = EncodeFrame("hello");
  for (size_t n = 0; n < frame.size(); ++n) {
    EXPECT_EQ(DecodeFrame(frame.substr(0, n)).status, FrameStatus::kIncomplete) << n;
  }
}

TEST(FrameTest, FlippedBitAnywhereIsCaught) {
  std::string frame = EncodeFrame("hello");
  for (size_t i = 0; i < frame.size(); ++i) {
    std::string bad = frame;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    EXPECT_NE(DecodeFrame(bad).status, FrameStatus::kOk) << "byte " << i;
  }
}

TEST(FrameTest, ImplausibleLengthIsCorrupt) {
  std::string bad(kFrameHeaderSize, '\xff');
  EXPECT_EQ(DecodeFrame(bad).status, FrameStatus::kCorrupt);
}

}  // namespace
}  // namespace tally::agent::spool
