#include "server/router/shard_client.h"

#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::router {
namespace {

using internal::v1::ShardGetBatchRequest;
using internal::v1::ShardGetBatchResponse;
using internal::v1::ShardGetRequest;
using internal::v1::ShardGetResponse;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Result = absl::StatusOr<ShardGetResponse>;

// A node's ShardService that answers each read with its object key as the state, "missing" with
// ABORTED, and holds every call until Release() while `hold` is set, so that a test can fill
// the client's calls in flight. Records what each call carried.
class FakeShardService final
    : public internal::v1::ShardService::WithCallbackMethod_Get<
          internal::v1::ShardService::WithCallbackMethod_GetBatch<
              internal::v1::ShardService::Service>> {
 public:
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const ShardGetRequest* request,
                                ShardGetResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    grpc::Status status = Answer(*request, response);
    absl::MutexLock lock(&mu_);
    gets_.push_back(request->object_key());
    if (hold_) {
      held_.push_back({reactor, status});
    } else {
      reactor->Finish(status);
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* GetBatch(grpc::CallbackServerContext* context,
                                     const ShardGetBatchRequest* request,
                                     ShardGetBatchResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    grpc::Status status = grpc::Status::OK;
    if (!batch_status_.ok()) {
      status = batch_status_;
    } else {
      for (const ShardGetRequest& get : request->gets()) {
        internal::v1::ShardGetResult* result = response->add_results();
        grpc::Status item = Answer(get, result->mutable_response());
        result->set_code(item.error_code());
        result->set_message(item.error_message());
      }
    }
    absl::MutexLock lock(&mu_);
    std::vector<std::string> keys;
    for (const ShardGetRequest& get : request->gets()) keys.push_back(get.object_key());
    batches_.push_back(std::move(keys));
    if (hold_) {
      held_.push_back({reactor, status});
    } else {
      reactor->Finish(status);
    }
    return reactor;
  }

  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  // Answers the held calls and stops holding.
  void Release() {
    std::vector<Held> held;
    {
      absl::MutexLock lock(&mu_);
      hold_ = false;
      held.swap(held_);
    }
    for (Held& h : held) h.reactor->Finish(h.status);
  }
  // Waits until `n` calls are held.
  bool AwaitHeld(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return held_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }
  void FailBatches(grpc::Status status) { batch_status_ = std::move(status); }

  std::vector<std::string> gets() {
    absl::MutexLock lock(&mu_);
    return gets_;
  }
  std::vector<std::vector<std::string>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

 private:
  struct Held {
    grpc::ServerUnaryReactor* reactor;
    grpc::Status status;
  };

  static grpc::Status Answer(const ShardGetRequest& request, ShardGetResponse* response) {
    if (request.object_key() == "missing") {
      return grpc::Status(grpc::StatusCode::ABORTED, "partition 3 is not held here");
    }
    response->set_found(true);
    response->mutable_state()->set_state(request.object_key());
    response->set_node_id("fake");
    return grpc::Status::OK;
  }

  grpc::Status batch_status_ = grpc::Status::OK;  // set before any call
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> gets_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> batches_ ABSL_GUARDED_BY(mu_);
};

// A node of an older release: Get only (sync). The read of "k0" waits for `release`.
class GetOnlyShardService final : public internal::v1::ShardService::Service {
 public:
  grpc::Status Get(grpc::ServerContext*, const ShardGetRequest* request,
                   ShardGetResponse* response) override {
    if (request->object_key() == "k0") {
      k0_arrived.Notify();
      release.WaitForNotificationWithTimeout(absl::Seconds(30));
    }
    response->set_found(true);
    response->mutable_state()->set_state(request->object_key());
    return grpc::Status::OK;
  }

  absl::Notification k0_arrived;
  absl::Notification release;
};

// The answers of reads, by the index they were asked in.
class Answers {
 public:
  explicit Answers(size_t n) : results_(n) {}

  ShardClient::Done<ShardGetResponse> For(size_t i) {
    return [this, i](Result result) {
      absl::MutexLock lock(&mu_);
      results_[i] = std::move(result);
      ++answered_;
    };
  }
  bool AwaitAll() {
    absl::MutexLock lock(&mu_);
    auto all = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return answered_ == results_.size(); };
    return mu_.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(30));
  }
  bool Await(size_t i) {
    absl::MutexLock lock(&mu_);
    auto answered = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return results_[i].has_value(); };
    return mu_.AwaitWithTimeout(absl::Condition(&answered), absl::Seconds(30));
  }
  size_t answered() {
    absl::MutexLock lock(&mu_);
    return answered_;
  }
  Result& operator[](size_t i) {
    absl::MutexLock lock(&mu_);
    return *results_[i];
  }

 private:
  absl::Mutex mu_;
  std::vector<std::optional<Result>> results_ ABSL_GUARDED_BY(mu_);
  size_t answered_ ABSL_GUARDED_BY(mu_) = 0;
};

class ShardClientTest : public ::testing::Test {
 protected:
  void Start(grpc::Service* service, GetBatching batching) {
    batching.stats = &stats_;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    endpoint_ = absl::StrCat("127.0.0.1:", port);
    client_ = NewGrpcShardClient(endpoint_, grpc::InsecureChannelCredentials(), batching);
  }
  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  // Requests for `keys`; they must stay where they are until answered.
  static std::vector<ShardGetRequest> Requests(const std::vector<std::string>& keys,
                                               int64_t min_offset = -1) {
    std::vector<ShardGetRequest> requests;
    for (const std::string& key : keys) {
      ShardGetRequest& r = requests.emplace_back();
      r.set_scenario("demo");
      r.set_partition(3);
      r.set_object_key(key);
      r.set_min_offset(min_offset);
    }
    return requests;
  }
  // Holds the node's answers, sends `first` (which fill the places in flight) and waits until
  // the node holds them, then sends `queued`, which queue in the client. Answers go to `answers`
  // by index, `first` before `queued`.
  void FillThenQueue(FakeShardService& service, const std::vector<ShardGetRequest>& first,
                     const std::vector<ShardGetRequest>& queued, Answers& answers) {
    service.Hold();
    GetAll(first, answers);
    ASSERT_TRUE(service.AwaitHeld(first.size()));
    GetAll(queued, answers, first.size());
  }
  void GetAll(const std::vector<ShardGetRequest>& requests, Answers& answers, size_t first = 0) {
    for (size_t i = 0; i < requests.size(); ++i) {
      client_->GetAsync(requests[i], absl::Now() + absl::Seconds(30), answers.For(first + i));
    }
  }

  GetBatchStats stats_;
  std::unique_ptr<grpc::Server> server_;
  std::string endpoint_;
  std::shared_ptr<ShardClient> client_;
};

TEST_F(ShardClientTest, ReadsGoAloneWhileCallsAreFreeAndQueuedOnesAsOneBatch) {
  FakeShardService service;
  Start(&service,
        GetBatching{.max_in_flight = 2, .max_batch = 64, .call_slice = absl::Seconds(30)});
  auto first = Requests({"a", "b"});
  auto queued = Requests({"c", "d", "missing", "e"});
  Answers answers(6);
  ASSERT_NO_FATAL_FAILURE(FillThenQueue(service, first, queued, answers));
  // a and b take both places: the others wait in the client, not on the node.
  EXPECT_EQ(answers.answered(), 0u);
  EXPECT_THAT(service.gets(), ::testing::UnorderedElementsAre("a", "b"));

  service.Release();
  ASSERT_TRUE(answers.AwaitAll());
  EXPECT_THAT(service.batches(), ElementsAre(ElementsAre("c", "d", "missing", "e")));
  // Each caller gets its own answer, an item's error included.
  const std::vector<std::string> keys = {"a", "b", "c", "d", "missing", "e"};
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] == "missing") {
      EXPECT_EQ(answers[i].status().code(), absl::StatusCode::kAborted);
      EXPECT_THAT(answers[i].status().message(), HasSubstr("partition 3 is not held here"));
      continue;
    }
    ASSERT_TRUE(answers[i].ok()) << keys[i] << ": " << answers[i].status();
    EXPECT_EQ(answers[i]->state().state(), keys[i]);
  }

  // Idle again: a read goes alone, at once.
  auto later = Requests({"f"});
  Answers later_answers(1);
  GetAll(later, later_answers);
  ASSERT_TRUE(later_answers.AwaitAll());
  EXPECT_EQ(service.gets().size(), 3u);
  EXPECT_EQ(service.batches().size(), 1u);
  // The counters behind /metrics say the same.
  EXPECT_EQ(stats_.get_calls.load(), 3);
  EXPECT_EQ(stats_.batch_calls.load(), 1);
  EXPECT_EQ(stats_.batched_reads.load(), 4);
  EXPECT_EQ(stats_.expired_queued.load(), 0);
}

TEST_F(ShardClientTest, QueueLongerThanABatchGoesInSeveralAndALoneReadAsAGet) {
  FakeShardService service;
  Start(&service,
        GetBatching{.max_in_flight = 1, .max_batch = 3, .call_slice = absl::Seconds(30)});
  auto first = Requests({"k0"});
  auto queued = Requests({"k1", "k2", "k3", "k4", "k5", "k6", "k7"});
  Answers answers(8);
  ASSERT_NO_FATAL_FAILURE(FillThenQueue(service, first, queued, answers));
  service.Release();
  ASSERT_TRUE(answers.AwaitAll());
  // One place: the queue drains in order, three at a time, the last one on its own.
  EXPECT_THAT(service.batches(),
              ElementsAre(ElementsAre("k1", "k2", "k3"), ElementsAre("k4", "k5", "k6")));
  EXPECT_THAT(service.gets(), ElementsAre("k0", "k7"));
  for (size_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(answers[i].ok()) << i << ": " << answers[i].status();
    EXPECT_EQ(answers[i]->state().state(), absl::StrCat("k", i));
  }
}

TEST_F(ShardClientTest, ReadAfterAWriteNeverWaitsBehindTheBatch) {
  FakeShardService service;
  Start(&service,
        GetBatching{.max_in_flight = 1, .max_batch = 64, .call_slice = absl::Seconds(30)});
  auto first = Requests({"a"});
  auto after_write = Requests({"w"}, /*min_offset=*/12);
  Answers answers(2);
  ASSERT_NO_FATAL_FAILURE(FillThenQueue(service, first, after_write, answers));
  // The only place is taken, yet a read with min_offset (which may wait on the node) is sent.
  ASSERT_TRUE(service.AwaitHeld(2));
  EXPECT_THAT(service.gets(), ElementsAre("a", "w"));
  service.Release();
  ASSERT_TRUE(answers.AwaitAll());
  EXPECT_TRUE(answers[1].ok()) << answers[1].status();
}

TEST_F(ShardClientTest, NodeThatStopsAnsweringKeepsNoQueuedReadPastItsDeadline) {
  FakeShardService service;
  Start(&service,
        GetBatching{.max_in_flight = 1, .max_batch = 64, .call_slice = absl::Seconds(1)});
  service.Hold();  // the node stops answering
  auto reads = Requests({"a", "b", "c"});
  Answers answers(3);
  const absl::Time start = absl::Now();
  client_->GetAsync(reads[0], start + absl::Seconds(60), answers.For(0));
  ASSERT_TRUE(service.AwaitHeld(1));
  client_->GetAsync(reads[1], absl::Now() + absl::Milliseconds(200), answers.For(1));
  client_->GetAsync(reads[2], start + absl::Seconds(60), answers.For(2));
  // b waits behind a's call, which the node never answers. It ends when that call's slice does
  // (its own deadline passed by then), not when a's deadline does.
  ASSERT_TRUE(answers.Await(1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(answers[1].status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(answers[1].status().message(), HasSubstr("node at " + endpoint_));
  EXPECT_THAT(answers[1].status().message(), HasSubstr("no answer within the read's deadline"));
  EXPECT_EQ(stats_.expired_queued.load(), 1);
  EXPECT_EQ(answers.answered(), 1u);
  // a and c, with time left, are sent again slice after slice (now together), and are answered
  // once the node answers again.
  ASSERT_TRUE(service.AwaitHeld(2));
  service.Release();
  ASSERT_TRUE(answers.AwaitAll());
  for (size_t i : {0, 2}) {
    ASSERT_TRUE(answers[i].ok()) << i << ": " << answers[i].status();
    EXPECT_EQ(answers[i]->state().state(), i == 0 ? "a" : "c");
  }
  EXPECT_GE(stats_.batch_calls.load(), 1);
}

TEST_F(ShardClientTest, FailedBatchFailsEachOfItsReadsNamingTheNode) {
  FakeShardService service;
  service.FailBatches(grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is draining"));
  Start(&service,
        GetBatching{.max_in_flight = 1, .max_batch = 64, .call_slice = absl::Seconds(30)});
  auto first = Requests({"a"});
  auto queued = Requests({"b", "c", "d"});
  Answers answers(4);
  ASSERT_NO_FATAL_FAILURE(FillThenQueue(service, first, queued, answers));
  service.Release();
  ASSERT_TRUE(answers.AwaitAll());
  EXPECT_TRUE(answers[0].ok()) << answers[0].status();
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(answers[i].status().code(), absl::StatusCode::kUnavailable) << i;
    EXPECT_THAT(answers[i].status().message(), HasSubstr("node at " + endpoint_));
    EXPECT_THAT(answers[i].status().message(), HasSubstr("node is draining"));
  }
}

TEST_F(ShardClientTest, NodeWithoutGetBatchGetsSeparateGets) {
  GetOnlyShardService service;
  Start(&service,
        GetBatching{.max_in_flight = 1, .max_batch = 64, .call_slice = absl::Seconds(30)});
  std::vector<std::string> keys = {"k0", "k1", "k2", "k3", "k4"};
  auto requests = Requests(keys);
  Answers answers(keys.size());
  client_->GetAsync(requests[0], absl::Now() + absl::Seconds(30), answers.For(0));
  ASSERT_TRUE(service.k0_arrived.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // These queue behind k0 and go as a GetBatch, which the node refuses (UNIMPLEMENTED): the
  // client sends them again one by one, and every caller still gets its own answer.
  for (size_t i = 1; i < keys.size(); ++i) {
    client_->GetAsync(requests[i], absl::Now() + absl::Seconds(30), answers.For(i));
  }
  service.release.Notify();
  ASSERT_TRUE(answers.AwaitAll());
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(answers[i].ok()) << keys[i] << ": " << answers[i].status();
    EXPECT_EQ(answers[i]->state().state(), keys[i]);
  }
}

}  // namespace
}  // namespace tally::router
