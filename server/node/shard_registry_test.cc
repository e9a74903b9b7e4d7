#include "server/node/shard_registry.h"

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::node {
namespace {

using ::testing::HasSubstr;

// Threads of this process, from /proc.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  ADD_FAILURE() << "no Threads: line in /proc/self/status";
  return -1;
}

// Collects the answers of WhenApplied, from whichever thread gives them.
class Answers {
 public:
  std::function<void(absl::Status)> Callback(int id) {
    return [this, id](absl::Status status) {
      absl::MutexLock lock(&mu_);
      statuses_.emplace_back(id, std::move(status));
      threads_.insert(std::this_thread::get_id());
    };
  }
  // Waits until `n` answers came (30 s at most); false if they did not.
  bool WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return statuses_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return statuses_.size();
  }
  std::vector<std::pair<int, absl::Status>> statuses() {
    absl::MutexLock lock(&mu_);
    return statuses_;
  }
  absl::flat_hash_set<std::thread::id> threads() {
    absl::MutexLock lock(&mu_);
    return threads_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<int, absl::Status>> statuses_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

ShardInfo Active(int32_t partition, int64_t applied) {
  ShardInfo info;
  info.scenario = "demo";
  info.partition = partition;
  info.role = ShardRole::kActive;
  info.applied_offset = applied;
  info.end_offset = applied;
  return info;
}

TEST(ShardRegistryTest, WhenAppliedAnswersOnTheCallersThreadWhenTheAnswerIsKnown) {
  ShardRegistry registry;
  registry.Put(Active(0, 10));
  ShardInfo standby = Active(1, 10);
  standby.role = ShardRole::kStandby;
  registry.Put(standby);
  Answers answers;
  const absl::Time later = absl::Now() + absl::Hours(1);
  registry.WhenApplied("demo", 0, 9, later, answers.Callback(0));             // applied
  registry.WhenApplied("demo", 1, 0, later, answers.Callback(1));             // standby only
  registry.WhenApplied("demo", 7, 0, later, answers.Callback(2));             // not held
  registry.WhenApplied("demo", 0, 10, absl::Now(), answers.Callback(3));      // deadline passed
  auto got = answers.statuses();  // all four, before WhenApplied returned
  ASSERT_EQ(got.size(), 4u);
  EXPECT_TRUE(got[0].second.ok()) << got[0].second;
  EXPECT_EQ(got[1].second.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(got[2].second.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(got[3].second.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(got[3].second.message(), HasSubstr("applied up to 9"));
  EXPECT_EQ(answers.threads(),
            absl::flat_hash_set<std::thread::id>{std::this_thread::get_id()});
}

TEST(ShardRegistryTest, ThousandsOfWaitingReadsShareTheRegistrysOneThread) {
  ShardRegistry registry;
  registry.Put(Active(0, 0));
  registry.Put(Active(1, 0));
  const int threads_before = ThreadCount();
  Answers answers;
  const absl::Time later = absl::Now() + absl::Hours(1);
  constexpr int kWaiters = 2000;
  for (int i = 0; i < kWaiters; ++i) {
    // Partition 0 waits for offsets 0..999, partition 1 for 0..999.
    registry.WhenApplied("demo", i % 2, i / 2, later, answers.Callback(i));
  }
  EXPECT_EQ(answers.count(), 0u);
  EXPECT_EQ(ThreadCount(), threads_before) << "a waiting read took a thread of its own";

  // Offsets 0..499 of partition 0 applied: exactly their 500 reads are answered, OK.
  registry.SetProgress("demo", 0, 500, 500);
  ASSERT_TRUE(answers.WaitFor(500));
  // Revoking partition 1 ends its 1000 reads ABORTED.
  registry.Remove("demo", 1);
  ASSERT_TRUE(answers.WaitFor(1500));
  auto got = answers.statuses();
  ASSERT_EQ(got.size(), 1500u);
  for (const auto& [id, status] : got) {
    if (id % 2 == 0) {
      EXPECT_LT(id / 2, 500) << id;
      EXPECT_TRUE(status.ok()) << id << ": " << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << id << ": " << status;
    }
  }
  auto threads = answers.threads();
  EXPECT_EQ(threads.size(), 1u);
  EXPECT_FALSE(threads.contains(std::this_thread::get_id()));

  // The rest of partition 0 once offset 999 is applied.
  registry.SetProgress("demo", 0, 1000, 1000);
  ASSERT_TRUE(answers.WaitFor(kWaiters));
  EXPECT_EQ(answers.count(), static_cast<size_t>(kWaiters));
}

TEST(ShardRegistryTest, AWaiterWithAnEarlierDeadlineIsAnsweredAtItsOwnDeadline) {
  Answers answers;  // outlives the registry, which answers the hour-long wait when destroyed
  ShardRegistry registry;
  registry.Put(Active(0, 5));
  // First a read that waits an hour, so the registry's thread sleeps for an hour; then one that
  // waits 50 ms, which must wake it.
  registry.WhenApplied("demo", 0, 100, absl::Now() + absl::Hours(1), answers.Callback(0));
  const absl::Time short_deadline = absl::Now() + absl::Milliseconds(50);
  registry.WhenApplied("demo", 0, 100, short_deadline, answers.Callback(1));
  ASSERT_TRUE(answers.WaitFor(1));
  EXPECT_GE(absl::Now(), short_deadline);
  auto got = answers.statuses();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 1);
  EXPECT_EQ(got[0].second.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(got[0].second.message(), HasSubstr("applied up to 4"));
}

TEST(ShardRegistryTest, ACallbackMayCallTheRegistry) {
  ShardRegistry registry;
  registry.Put(Active(0, 0));
  Answers answers;
  // The first answer parks another read, which the same progress does not settle.
  registry.WhenApplied("demo", 0, 0, absl::Now() + absl::Hours(1),
                       [&](absl::Status status) {
                         answers.Callback(0)(std::move(status));
                         registry.WhenApplied("demo", 0, 1, absl::Now() + absl::Hours(1),
                                              answers.Callback(1));
                       });
  registry.SetProgress("demo", 0, 1, 1);
  ASSERT_TRUE(answers.WaitFor(1));
  registry.SetProgress("demo", 0, 2, 2);
  ASSERT_TRUE(answers.WaitFor(2));
  for (const auto& [id, status] : answers.statuses()) EXPECT_TRUE(status.ok()) << id;
}

TEST(ShardRegistryTest, DestroyingTheRegistryAnswersTheWaitingReadsAborted) {
  auto registry = std::make_unique<ShardRegistry>();
  registry->Put(Active(0, 0));
  Answers answers;
  for (int i = 0; i < 3; ++i) {
    registry->WhenApplied("demo", 0, 10, absl::Now() + absl::Hours(1), answers.Callback(i));
  }
  EXPECT_EQ(answers.count(), 0u);
  registry.reset();
  auto got = answers.statuses();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& [id, status] : got) {
    EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << id;
    EXPECT_THAT(status.message(), HasSubstr("node stopping"));
  }
}

}  // namespace
}  // namespace tally::node
