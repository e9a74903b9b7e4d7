#include "agent/reporter/backoff.h"

#include "gtest/gtest.h"

namespace tally::agent {
namespace {

TEST(BackoffTest, DoublesUpToTheCapWithoutJitter) {
  Backoff b({absl::Milliseconds(100), absl::Seconds(1), 0.0}, 1);
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
  EXPECT_EQ(b.Next(), absl::Milliseconds(200));
  EXPECT_EQ(b.Next(), absl::Milliseconds(400));
  EXPECT_EQ(b.Next(), absl::Milliseconds(800));
  EXPECT_EQ(b.Next(), absl::Seconds(1));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.Next(), absl::Seconds(1));
  b.Reset();
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, JitterStaysInItsBandAndVaries) {
  Backoff b({absl::Seconds(1), absl::Seconds(60), 0.2}, 42);
  absl::Duration first = b.Next();
  EXPECT_GE(first, absl::Milliseconds(800));
  EXPECT_LE(first, absl::Milliseconds(1200));
  bool varied = false;
  for (int i = 0; i < 20; ++i) {
    b.Reset();
    absl::Duration d = b.Next();
    EXPECT_GE(d, absl::Milliseconds(800));
    EXPECT_LE(d, absl::Milliseconds(1200));
    varied = varied || d != first;
  }
  EXPECT_TRUE(varied);
  // At the cap, jitter only shortens the wait.
  for (int i = 0; i < 20; ++i) b.Next();
  absl::Duration capped = b.Next();
  EXPECT_LE(capped, absl::Seconds(60));
  EXPECT_GE(capped, absl::Seconds(48));
}

}  // namespace
}  // namespace tally::agent
