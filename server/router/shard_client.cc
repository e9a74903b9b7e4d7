#include "server/router/shard_client.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/node/shard_service.h"

namespace tally::router {
namespace {

class GrpcShardClient final : public ShardClient {
 public:
  GrpcShardClient(const std::string& endpoint,
                  std::shared_ptr<grpc::ChannelCredentials> credentials, GetBatching batching)
      : endpoint_(endpoint),
        batching_(batching),
        stub_(internal::v1::ShardService::NewStub(grpc::CreateChannel(endpoint, credentials))) {}

  absl::StatusOr<internal::v1::ShardGetResponse> Get(const internal::v1::ShardGetRequest& request,
                                                     absl::Time deadline) override {
    return Call(&Stub::Get, request, deadline);
  }

  absl::StatusOr<internal::v1::ShardScanResponse> Scan(
      const internal::v1::ShardScanRequest& request, absl::Time deadline) override {
    return Call(&Stub::Scan, request, deadline);
  }

  void GetAsync(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                Done<internal::v1::ShardGetResponse> done) override {
    if (request.min_offset() >= 0 || !batch_supported_.load(std::memory_order_relaxed)) {
      return GetAlone(request, deadline, std::move(done));
    }
    {
      absl::MutexLock lock(&gets_mu_);
      if (gets_in_flight_ >= batching_.max_in_flight) {
        queued_gets_.push_back(QueuedGet{&request, deadline, std::move(done)});
        return;
      }
      ++gets_in_flight_;
    }
    std::vector<QueuedGet> gets;
    gets.push_back(QueuedGet{&request, deadline, std::move(done)});
    SendGets(std::move(gets));
  }

  void ScanAsync(const internal::v1::ShardScanRequest& request, absl::Time deadline,
                 Done<internal::v1::ShardScanResponse> done) override {
    CallAsync(request, deadline, std::move(done), [this](auto* context, auto* request,
                                                         auto* response, auto callback) {
      stub_->async()->Scan(context, request, response, std::move(callback));
    });
  }

  absl::Status Snapshot(const internal::v1::ShardSnapshotRequest& request, absl::Time deadline,
                        const SnapshotEmit& emit) override {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    std::unique_ptr<grpc::ClientReader<internal::v1::ShardSnapshotResponse>> reader =
        stub_->Snapshot(&context, request);
    internal::v1::ShardSnapshotResponse chunk;
    bool done = false;
    while (reader->Read(&chunk)) {
      done = chunk.done();
      if (!emit(chunk)) {
        // Our own cancellation, not the node's: CANCELLED as ShardQueries says, not retried.
        context.TryCancel();
        reader->Finish();
        return absl::CancelledError("snapshot reader went away");
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok() && !done) return Annotate(status);
    if (!done)
      return absl::UnavailableError(absl::StrCat("node at ", endpoint_, ": snapshot cut short"));
    return absl::OkStatus();
  }

 private:
  using Stub = internal::v1::ShardService::Stub;
  using GetResult = absl::StatusOr<internal::v1::ShardGetResponse>;

  struct QueuedGet {
    const internal::v1::ShardGetRequest* request;  // valid until `done` runs
    absl::Time deadline;
    Done<internal::v1::ShardGetResponse> done;
  };

  void GetAlone(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                Done<internal::v1::ShardGetResponse> done) {
    Count(&GetBatchStats::get_calls, 1);
    CallAsync(request, deadline, std::move(done), [this](auto* context, auto* request,
                                                         auto* response, auto callback) {
      stub_->async()->Get(context, request, response, std::move(callback));
    });
  }

  // One call that holds a place in flight: a Get for one read, a GetBatch for more. It ends by
  // the earliest of the reads' deadlines, and within call_slice, so that a node that stopped
  // answering holds no place for long: reads the slice cut short are sent again (until their
  // own deadlines), and queued reads whose deadlines pass are answered at the next call's end.
  void SendGets(std::vector<QueuedGet> gets) {
    struct Call {
      grpc::ClientContext context;
      internal::v1::ShardGetResponse response;  // of a Get
      internal::v1::ShardGetBatchRequest batch_request;
      internal::v1::ShardGetBatchResponse batch_response;
      std::vector<QueuedGet> gets;
      absl::Time deadline;
    };
    auto* call = new Call;
    call->deadline = absl::Now() + batching_.call_slice;
    for (const QueuedGet& get : gets) call->deadline = std::min(call->deadline, get.deadline);
    call->gets = std::move(gets);
    call->context.set_deadline(absl::ToChronoTime(call->deadline));
    if (call->gets.size() == 1) {
      Count(&GetBatchStats::get_calls, 1);
      stub_->async()->Get(&call->context, call->gets[0].request, &call->response,
                          [this, call](grpc::Status status) {
                            std::vector<GetResult> results;
                            if (status.ok()) results.push_back(std::move(call->response));
                            std::vector<QueuedGet> gets = std::move(call->gets);
                            const absl::Time deadline = call->deadline;
                            delete call;  // before answering: see CallAsync
                            Ended(std::move(gets), deadline, status, std::move(results));
                          });
      return;
    }
    Count(&GetBatchStats::batch_calls, 1);
    Count(&GetBatchStats::batched_reads, static_cast<int64_t>(call->gets.size()));
    call->batch_request.mutable_gets()->Reserve(static_cast<int>(call->gets.size()));
    for (const QueuedGet& get : call->gets) *call->batch_request.add_gets() = *get.request;
    stub_->async()->GetBatch(
        &call->context, &call->batch_request, &call->batch_response,
        [this, call](grpc::Status status) {
          std::unique_ptr<Call> owned(call);
          std::vector<QueuedGet> gets = std::move(owned->gets);
          const absl::Time deadline = owned->deadline;
          if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
            owned.reset();  // before answering: see CallAsync
            // A node of an older release: from now on every read goes alone, as before batching.
            batch_supported_.store(false, std::memory_order_relaxed);
            for (QueuedGet& get : gets) GetAlone(*get.request, get.deadline, std::move(get.done));
            return Ended({}, deadline, grpc::Status::OK, {});
          }
          std::vector<GetResult> results;
          const int n = static_cast<int>(gets.size());
          if (status.ok() && owned->batch_response.results_size() != n) {
            status = grpc::Status(grpc::StatusCode::INTERNAL,
                                  absl::StrCat("node at ", endpoint_, ": GetBatch answered ",
                                               owned->batch_response.results_size(), " of ", n,
                                               " reads"));
          }
          if (status.ok()) {
            for (internal::v1::ShardGetResult& result :
                 *owned->batch_response.mutable_results()) {
              if (result.code() != 0) {
                results.push_back(ResultStatus(result));
              } else {
                results.push_back(std::move(*result.mutable_response()));
              }
            }
          }
          owned.reset();  // before answering: see CallAsync
          Ended(std::move(gets), deadline, status, std::move(results));
        });
  }

  // A call of SendGets ended with `status` and, if OK, one result per read. Frees its place or
  // passes it on (GetCallEnded), then answers its reads; `this` is not used after that, as a
  // read's `done` may hold the last reference to this client.
  void Ended(std::vector<QueuedGet> gets, absl::Time call_deadline, const grpc::Status& status,
             std::vector<GetResult> results) {
    std::vector<QueuedGet> again;  // cut short by the slice, with time left of their own
    std::vector<std::pair<QueuedGet, GetResult>> answers;
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < gets.size(); ++i) {
      if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
          gets[i].deadline > call_deadline && gets[i].deadline > now) {
        again.push_back(std::move(gets[i]));
      } else if (!status.ok()) {
        answers.emplace_back(std::move(gets[i]), Annotate(status));
      } else {
        answers.emplace_back(std::move(gets[i]), std::move(results[i]));
      }
    }
    GetCallEnded(std::move(again));
    for (auto& [get, result] : answers) get.done(std::move(result));
  }

  // A call that held a place ended: `again` and the queued reads take the place as the next call,
  // or it is free. Queued reads whose deadlines passed are answered DEADLINE_EXCEEDED.
  void GetCallEnded(std::vector<QueuedGet> again) {
    std::vector<QueuedGet> next;
    std::vector<QueuedGet> expired;
    const bool batch = batch_supported_.load(std::memory_order_relaxed);
    {
      absl::MutexLock lock(&gets_mu_);
      queued_gets_.insert(queued_gets_.begin(), std::make_move_iterator(again.begin()),
                          std::make_move_iterator(again.end()));
      const absl::Time now = absl::Now();
      auto is_live = [now](const QueuedGet& get) { return get.deadline > now; };
      // Reads rarely expire in the queue: look before rearranging it.
      if (!std::all_of(queued_gets_.begin(), queued_gets_.end(), is_live)) {
        auto live = std::stable_partition(queued_gets_.begin(), queued_gets_.end(), is_live);
        expired.assign(std::make_move_iterator(live), std::make_move_iterator(queued_gets_.end()));
        queued_gets_.erase(live, queued_gets_.end());
      }
      const size_t n = batch ? std::min(queued_gets_.size(),
                                        static_cast<size_t>(batching_.max_batch))
                             : queued_gets_.size();
      next.assign(std::make_move_iterator(queued_gets_.begin()),
                  std::make_move_iterator(queued_gets_.begin() + n));
      queued_gets_.erase(queued_gets_.begin(), queued_gets_.begin() + n);
      if (next.empty() || !batch) --gets_in_flight_;
    }
    if (!batch) {
      for (QueuedGet& get : next) GetAlone(*get.request, get.deadline, std::move(get.done));
    } else if (!next.empty()) {
      SendGets(std::move(next));
    }
    if (expired.empty()) return;
    Count(&GetBatchStats::expired_queued, static_cast<int64_t>(expired.size()));
    const absl::Status late = absl::DeadlineExceededError(absl::StrCat(
        "node at ", endpoint_, ": no answer within the read's deadline (queued behind ",
        batching_.max_in_flight, " calls in flight)"));
    for (QueuedGet& get : expired) get.done(late);
  }

  void Count(std::atomic<int64_t> GetBatchStats::*counter, int64_t n) {
    if (batching_.stats != nullptr) {
      (batching_.stats->*counter).fetch_add(n, std::memory_order_relaxed);
    }
  }

  // One GetBatch item's error as the status Get would have ended with.
  static absl::Status ResultStatus(const internal::v1::ShardGetResult& result) {
    const bool known =
        result.code() > 0 && result.code() <= static_cast<int>(absl::StatusCode::kUnauthenticated);
    return absl::Status(known ? static_cast<absl::StatusCode>(result.code())
                              : absl::StatusCode::kUnknown,
                        result.message());
  }

  // One unary call within `deadline`.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                             Response*),
                                const Request& request, absl::Time deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    Response response;
    grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (!status.ok()) return Annotate(status);
    return response;
  }

  // One unary call within `deadline` through gRPC's callback API: `start` starts it; `done` gets
  // its answer on a gRPC thread.
  template <typename Request, typename Response, typename Start>
  void CallAsync(const Request& request, absl::Time deadline, Done<Response> done, Start start) {
    struct Call {
      grpc::ClientContext context;
      Response response;
      Done<Response> done;
    };
    auto* call = new Call;
    call->done = std::move(done);
    call->context.set_deadline(absl::ToChronoTime(deadline));
    start(&call->context, &request, &call->response, [this, call](grpc::Status status) {
      Done<Response> done = std::move(call->done);
      absl::StatusOr<Response> result =
          status.ok() ? absl::StatusOr<Response>(std::move(call->response)) : Annotate(status);
      // The call's context holds a reference to the channel. Drop it before `done` lets the
      // caller go on: otherwise, once the caller has let go of this client, the channel may be
      // destroyed here, on the gRPC thread that runs this callback. gRPC 1.51 then shuts down
      // the callback queue that very thread polls, and the thread crashes (seen as a segfault
      // in grpc_completion_queue_next when a test's last client and server go away).
      delete call;
      done(std::move(result));
    });
  }

  absl::Status Annotate(const grpc::Status& status) {
    absl::Status s = FromGrpcStatus(status);
    if (s.code() == absl::StatusCode::kCancelled) {
      // The router cancels only a snapshot whose reader went away, and does not come here then:
      // the node cancelled, shutting down. Another copy (or the node's successor) may answer, so
      // it is worth a retry.
      return absl::UnavailableError(absl::StrCat(
          "node at ", endpoint_, " cancelled the call (shutting down?): ", s.message()));
    }
    if (s.code() == absl::StatusCode::kUnavailable ||
        s.code() == absl::StatusCode::kDeadlineExceeded) {
      // The transport's message alone ("failed to connect to all addresses", "Deadline
      // Exceeded") does not say which node.
      return absl::Status(s.code(), absl::StrCat("node at ", endpoint_, ": ", s.message()));
    }
    return s;
  }

  const std::string endpoint_;
  const GetBatching batching_;
  const std::unique_ptr<internal::v1::ShardService::Stub> stub_;
  std::atomic<bool> batch_supported_{true};

  absl::Mutex gets_mu_;
  int gets_in_flight_ ABSL_GUARDED_BY(gets_mu_) = 0;  // calls of SendGets
  std::vector<QueuedGet> queued_gets_ ABSL_GUARDED_BY(gets_mu_);
};

class LocalShardClient final : public ShardClient {
 public:
  explicit LocalShardClient(const node::ShardQueries& queries) : queries_(queries) {}

  absl::StatusOr<internal::v1::ShardGetResponse> Get(const internal::v1::ShardGetRequest& request,
                                                     absl::Time deadline) override {
    return queries_.Get(request, deadline);
  }
  absl::StatusOr<internal::v1::ShardScanResponse> Scan(
      const internal::v1::ShardScanRequest& request, absl::Time) override {
    return queries_.Scan(request);
  }

  void GetAsync(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                Done<internal::v1::ShardGetResponse> done) override {
    // The server waits for `done` (the call's completion) before the node goes away.
    queries_.GetAsync(request, deadline, std::move(done));
  }
  absl::Status Snapshot(const internal::v1::ShardSnapshotRequest& request, absl::Time,
                        const SnapshotEmit& emit) override {
    return queries_.Snapshot(request, emit);
  }

 private:
  const node::ShardQueries& queries_;
};

}  // namespace

std::shared_ptr<ShardClient> NewGrpcShardClient(
    const std::string& endpoint, std::shared_ptr<grpc::ChannelCredentials> credentials,
    GetBatching batching) {
  batching.max_in_flight = std::max(batching.max_in_flight, 1);
  batching.max_batch = std::clamp(batching.max_batch, 1, node::kMaxGetBatch);
  return std::make_shared<GrpcShardClient>(endpoint, std::move(credentials), batching);
}

std::shared_ptr<ShardClient> NewLocalShardClient(const node::ShardQueries& queries) {
  return std::make_shared<LocalShardClient>(queries);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace tally::router
