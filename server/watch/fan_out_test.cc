#include "server/watch/fan_out.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace tally::watch {
namespace {

TEST(FanOutTest, CallsEveryItemOnceAndReturnsAfterTheLast) {
  for (int threads : {1, 2, 4}) {
    SCOPED_TRACE(threads);
    FanOut fan_out(threads);
    for (size_t items : {0, 1, 2, 3, 1000}) {
      SCOPED_TRACE(items);
      std::vector<std::atomic<int>> calls(items);
      fan_out.Run(items, [&](size_t i) { calls[i].fetch_add(1); });
      // Run has returned: every call has too, so each count is final here.
      for (size_t i = 0; i < items; ++i) EXPECT_EQ(calls[i].load(), 1) << i;
    }
  }
}

TEST(FanOutTest, NeighbouringItemsRunOnDifferentThreads) {
  FanOut fan_out(2);
  absl::Mutex mu;
  std::vector<std::thread::id> thread_of(4);
  fan_out.Run(4, [&](size_t i) {
    absl::MutexLock lock(&mu);
    thread_of[i] = std::this_thread::get_id();
  });
  EXPECT_NE(thread_of[0], thread_of[1]);
  EXPECT_EQ(thread_of[0], thread_of[2]);
  EXPECT_EQ(thread_of[1], thread_of[3]);
  EXPECT_EQ(thread_of[0], std::this_thread::get_id()) << "the caller takes a share";
}

TEST(FanOutTest, DestroysWithoutARunAndAfterMany) {
  { FanOut idle(2); }
  FanOut busy(2);
  std::atomic<int> calls{0};
  for (int round = 0; round < 200; ++round) busy.Run(2, [&](size_t) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 400);
}

}  // namespace
}  // namespace tally::watch
