#include "server/node/shard_queries.h"

#include <optional>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "server/node/shard_service.h"
#include "tests/testing/temp_dir.h"

namespace tally::node {
namespace {

using internal::v1::ShardGetRequest;
using internal::v1::ShardScanRequest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

storage::ObjectData Object(const std::string& state, std::vector<std::string> agents) {
  storage::ObjectData data;
  data.state.set_state(state);
  data.state.set_version(3);
  data.state.set_updated_at_ms(1700000000000);
  for (const std::string& agent : agents) {
    records::v1::Vote vote;
    vote.set_agent_id(agent);
    vote.set_state(state);
    vote.set_observed_at_ms(1700000000000);
    vote.set_expires_at_ms(1700000060000);
    data.votes.push_back(vote);
    (*data.state.mutable_tally())[state] += 1;
  }
  return data;
}

class ShardQueriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto shard = storage::Shard::Open(dir_.path() + "/s", storage::ShardOptions{});
    ASSERT_TRUE(shard.ok()) << shard.status();
    shard_ = std::move(*shard);
    registry_.Put(ShardInfo{"demo", 2, ShardRole::kActive, shard_});
  }

  void Write(std::vector<std::pair<std::string, storage::ObjectData>> objects) {
    auto batch = shard_->NewWriteBatch();
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (auto& [key, data] : objects) (*batch)->PutObject(key, data);
    ASSERT_TRUE((*batch)->Commit().ok());
  }

  static ShardGetRequest GetRequest(const std::string& key, int64_t min_offset = -1) {
    ShardGetRequest request;
    request.set_scenario("demo");
    request.set_partition(2);
    request.set_object_key(key);
    request.set_min_offset(min_offset);
    return request;
  }

  test::TempDir dir_;
  std::shared_ptr<storage::Shard> shard_;
  ShardRegistry registry_;
  ShardQueries queries_{registry_, "n1"};
};

TEST_F(ShardQueriesTest, GetReturnsTheObjectStateWithVotesAndTally) {
  Write({{"site-1", Object("attack", {"a1", "a2"})}});
  registry_.SetProgress("demo", 2, 10, 12);
  auto got = queries_.Get(GetRequest("site-1"), absl::InfiniteFuture());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->found());
  EXPECT_EQ(got->node_id(), "n1");
  EXPECT_EQ(got->applied_offset(), 10);
  EXPECT_EQ(got->lag(), 2);
  EXPECT_EQ(got->state().scenario(), "demo");
  EXPECT_EQ(got->state().object_key(), "site-1");
  EXPECT_EQ(got->state().state(), "attack");
  EXPECT_EQ(got->state().version(), 3);
  EXPECT_EQ(got->state().updated_at().seconds(), 1700000000);
  ASSERT_EQ(got->state().votes_size(), 2);
  EXPECT_EQ(got->state().votes(1).agent_id(), "a2");
  EXPECT_EQ(got->state().votes(1).expires_at().seconds(), 1700000060);
  EXPECT_EQ(got->state().tally().at("attack"), 2);
}

TEST_F(ShardQueriesTest, ObjectWithoutStateIsNotFound) {
  Write({{"empty", Object("", {})}});
  auto got = queries_.Get(GetRequest("empty"), absl::InfiniteFuture());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->found());
  got = queries_.Get(GetRequest("absent"), absl::InfiniteFuture());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->found());
}

TEST_F(ShardQueriesTest, PartitionNotHeldIsAborted) {
  ShardGetRequest request = GetRequest("x");
  request.set_partition(5);
  auto got = queries_.Get(request, absl::InfiniteFuture());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(got.status().message(), HasSubstr("partition 5"));
}

TEST_F(ShardQueriesTest, RestoringPartitionIsUnavailable) {
  registry_.SetRole("demo", 2, ShardRole::kRestoring);
  auto got = queries_.Get(GetRequest("x"), absl::InfiniteFuture());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("restoring"));
}

TEST_F(ShardQueriesTest, StandbyAnswersOnlyWithinMaxLag) {
  registry_.SetRole("demo", 2, ShardRole::kStandby);
  registry_.SetProgress("demo", 2, 90, 100);
  ShardGetRequest request = GetRequest("x");
  EXPECT_EQ(queries_.Get(request, absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kAborted);
  request.set_max_lag(5);
  EXPECT_EQ(queries_.Get(request, absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kAborted);
  request.set_max_lag(10);
  EXPECT_TRUE(queries_.Get(request, absl::InfiniteFuture()).ok());
}

TEST_F(ShardQueriesTest, GetWaitsForMinOffsetToBeApplied) {
  Write({{"k", Object("up", {"a"})}});
  registry_.SetProgress("demo", 2, 5, 5);
  std::thread applier([&] {
    // Progress arrives later, from another thread, as the processor's commits do.
    absl::SleepFor(absl::Milliseconds(50));
    registry_.SetProgress("demo", 2, 8, 8);
  });
  auto got = queries_.Get(GetRequest("k", /*min_offset=*/7), absl::Now() + absl::Seconds(30));
  applier.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->applied_offset(), 8);
}

TEST_F(ShardQueriesTest, GetAsyncAnswersInlineUnlessItMustWaitThenFromTheRegistrysThread) {
  Write({{"k", Object("up", {"a"})}});
  registry_.SetProgress("demo", 2, 5, 5);
  using Result = absl::StatusOr<internal::v1::ShardGetResponse>;
  const std::thread::id caller = std::this_thread::get_id();

  // No offset to wait for, or one already applied: `done` runs before GetAsync returns.
  for (int64_t min_offset : {-1, 4}) {
    std::optional<Result> inline_result;
    queries_.GetAsync(GetRequest("k", min_offset), absl::Now() + absl::Seconds(30),
                      [&](Result r) { inline_result = std::move(r); });
    ASSERT_TRUE(inline_result.has_value()) << "min_offset " << min_offset;
    ASSERT_TRUE(inline_result->ok()) << inline_result->status();
  }

  // An offset not applied yet: GetAsync returns at once, and the answer comes from another
  // thread once the offset is applied.
  absl::Notification answered;
  Result waited = absl::UnknownError("not answered");
  std::thread::id answered_on;
  queries_.GetAsync(GetRequest("k", /*min_offset=*/7), absl::Now() + absl::Seconds(30),
                    [&](Result r) {
                      waited = std::move(r);
                      answered_on = std::this_thread::get_id();
                      answered.Notify();
                    });
  EXPECT_FALSE(answered.HasBeenNotified());
  registry_.SetProgress("demo", 2, 8, 8);
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->applied_offset(), 8);
  EXPECT_NE(answered_on, caller);

  // Past its deadline it ends DEADLINE_EXCEEDED, naming the applied offset.
  absl::Notification expired;
  Result late = absl::UnknownError("not answered");
  queries_.GetAsync(GetRequest("k", /*min_offset=*/20), absl::Now() + absl::Milliseconds(20),
                    [&](Result r) {
                      late = std::move(r);
                      expired.Notify();
                    });
  ASSERT_TRUE(expired.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(late.status().message(), HasSubstr("applied up to 7"));
}

TEST_F(ShardQueriesTest, WaitingGetAsyncReadsShareOneThread) {
  Write({{"k", Object("up", {"a"})}});
  registry_.SetProgress("demo", 2, 0, 0);
  constexpr int kReads = 500;
  absl::Mutex mu;
  int ok = 0;
  int answered = 0;
  absl::flat_hash_set<std::thread::id> threads;
  for (int i = 0; i < kReads; ++i) {
    queries_.GetAsync(GetRequest("k", /*min_offset=*/i), absl::Now() + absl::Seconds(60),
                      [&](absl::StatusOr<internal::v1::ShardGetResponse> r) {
                        absl::MutexLock lock(&mu);
                        ++answered;
                        ok += r.ok() && r->found();
                        threads.insert(std::this_thread::get_id());
                      });
  }
  registry_.SetProgress("demo", 2, kReads, kReads);
  absl::MutexLock lock(&mu);
  auto all = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return answered == kReads; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(30))) << answered;
  EXPECT_EQ(ok, kReads);
  // Not a thread per waiting read: the registry's one thread answered them all.
  EXPECT_EQ(threads.size(), 1u);
}

TEST_F(ShardQueriesTest, GetPastTheDeadlineNamesTheAppliedOffset) {
  registry_.SetProgress("demo", 2, 5, 5);
  auto got = queries_.Get(GetRequest("k", /*min_offset=*/9), absl::Now() + absl::Milliseconds(20));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(got.status().message(), HasSubstr("applied up to 4"));
}

TEST_F(ShardQueriesTest, WaitEndsAbortedWhenThePartitionIsRevoked) {
  std::thread revoker([&] {
    absl::SleepFor(absl::Milliseconds(50));
    registry_.Remove("demo", 2);
  });
  auto got = queries_.Get(GetRequest("k", /*min_offset=*/100), absl::Now() + absl::Seconds(30));
  revoker.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted);
}

TEST_F(ShardQueriesTest, ScanPagesSkipObjectsWithoutStateAndReportTheLastKey) {
  Write({{"a/1", Object("x", {"p"})},
         {"a/2", Object("", {})},
         {"a/3", Object("y", {"q"})},
         {"b/1", Object("z", {"r"})}});
  ShardScanRequest request;
  request.set_scenario("demo");
  request.set_partition(2);
  request.set_prefix("a/");
  request.set_limit(2);
  auto page = queries_.Scan(request);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->states_size(), 1);
  EXPECT_EQ(page->states(0).object_key(), "a/1");
  EXPECT_TRUE(page->more());
  EXPECT_EQ(page->last_key(), "a/2");
  request.set_after(page->last_key());
  page = queries_.Scan(request);
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<std::string> keys;
  for (const auto& s : page->states()) keys.push_back(s.object_key());
  EXPECT_THAT(keys, ElementsAre("a/3"));
  EXPECT_FALSE(page->more());
  EXPECT_EQ(page->states(0).votes(0).agent_id(), "q");
  // A page exactly filled by the last key still says it is the last.
  request.set_limit(1);
  page = queries_.Scan(request);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->states_size(), 1);
  EXPECT_FALSE(page->more());
}

TEST_F(ShardQueriesTest, ShardServiceGetBatchAnswersEachItemAsGetWould) {
  Write({{"k", Object("up", {"a"})}});
  registry_.SetProgress("demo", 2, 5, 5);
  ShardService service(queries_, absl::Seconds(30));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = internal::v1::ShardService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));

  internal::v1::ShardGetBatchRequest request;
  *request.add_gets() = GetRequest("k");
  *request.add_gets() = GetRequest("nope");
  *request.add_gets() = GetRequest("k");
  request.mutable_gets(2)->set_partition(5);              // not held here
  *request.add_gets() = GetRequest("k", /*min_offset=*/7);  // not applied yet: waits
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  internal::v1::ShardGetBatchResponse response;
  grpc::Status status;
  absl::Notification done;
  stub->async()->GetBatch(&context, &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  // The call ends with its last item, which waits for offset 7.
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  registry_.SetProgress("demo", 2, 8, 8);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 4);
  EXPECT_EQ(response.results(0).code(), 0);
  EXPECT_TRUE(response.results(0).response().found());
  EXPECT_EQ(response.results(0).response().state().state(), "up");
  EXPECT_EQ(response.results(1).code(), 0);
  EXPECT_FALSE(response.results(1).response().found());
  EXPECT_EQ(response.results(2).code(), static_cast<int>(absl::StatusCode::kAborted));
  EXPECT_THAT(response.results(2).message(), HasSubstr("does not hold partition"));
  EXPECT_EQ(response.results(3).code(), 0);
  EXPECT_EQ(response.results(3).response().applied_offset(), 8);

  // Too many items: refused whole, naming the field.
  internal::v1::ShardGetBatchRequest too_many;
  for (int i = 0; i <= kMaxGetBatch; ++i) *too_many.add_gets() = GetRequest("k");
  grpc::ClientContext too_many_context;
  internal::v1::ShardGetBatchResponse ignored;
  grpc::Status refused = stub->GetBatch(&too_many_context, too_many, &ignored);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("gets: at most 1000"));
  server->Shutdown();
}

}  // namespace
}  // namespace tally::node
