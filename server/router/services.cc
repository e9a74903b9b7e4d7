#include "server/router/services.h"

#include <cassert>
#include <deque>
#include <future>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "server/node/shard_service.h"
#include "server/router/parse_error_interceptor.h"

namespace tally::router {
namespace {

using node::ToGrpcStatus;

// Most reports of one ReportStates stream waiting for Kafka at once; beyond it the stream stops
// reading (flow control back to the agent).
constexpr size_t kMaxInFlightPerStream = 1000;

// Runs a write and waits for its token within the deadline.
grpc::Status WaitForWrite(absl::Time deadline, const std::function<void(Router::WriteDone)>& write,
                          std::string* token) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::string>>>();
  std::future<absl::StatusOr<std::string>> future = promise->get_future();
  write([promise](absl::StatusOr<std::string> result) { promise->set_value(std::move(result)); });
  if (future.wait_until(absl::ToChronoTime(deadline)) != std::future_status::ready) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "Kafka did not confirm the write before the deadline; it may still "
                        "happen: retry (a retried write is harmless)");
  }
  absl::StatusOr<std::string> result = future.get();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *token = std::move(*result);
  return grpc::Status::OK;
}

// OK if the call's credentials carry `role`, else why not (UNAUTHENTICATED, PERMISSION_DENIED).
grpc::Status Allowed(const auth::Authorizer& auth, const grpc::ServerContextBase& context,
                     auth::Role role, const char* rpc) {
  auto principal = auth.Authorize(context.client_metadata(), role, rpc);
  return principal.ok() ? grpc::Status::OK : ToGrpcStatus(principal.status());
}

// One ReportStates stream: reads requests, writes each to Kafka, and answers in request order.
// The first failed request ends the stream with its error (prefixed with its index) once every
// response before it has been written. Callbacks of pending writes hold the shared state, so the
// reactor may be done before they are.
class ReportStream final
    : public grpc::ServerBidiReactor<v1::ReportStateRequest, v1::ReportStateResponse> {
 public:
  ReportStream(Router& router, const auth::Authorizer& auth, auth::ReportRateLimiter& limit,
               auth::Principal principal)
      : router_(router),
        auth_(auth),
        limit_(limit),
        principal_(std::move(principal)),
        state_(std::make_shared<State>()) {
    state_->stream = this;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    std::unique_lock lock(state_->mu);
    if (!ok) {
      state_->reading_done = true;
      MaybeAdvance(lock);
      return;
    }
    const uint64_t index = state_->next_index++;
    state_->pending.push_back(Slot{index, false, {}, {}});
    ++state_->in_flight;
    lock.unlock();
    std::shared_ptr<State> state = state_;
    auto done = [state, index](absl::StatusOr<std::string> token) {
      std::unique_lock lock(state->mu);
      --state->in_flight;
      // Slots hold consecutive indices and leave only from the front, once their answer is
      // written, which needs this call first; nothing else removes them, not even the end of
      // the stream. So this one is still there, at its distance from the front (a scan was the
      // stream's largest cost with a thousand reports in flight).
      assert(!state->pending.empty() && index >= state->pending.front().index &&
             index - state->pending.front().index < state->pending.size());
      Slot& slot = state->pending[index - state->pending.front().index];
      slot.done = true;
      if (token.ok()) {
        slot.response.set_token(std::move(*token));
      } else {
        slot.error = grpc::Status(static_cast<grpc::StatusCode>(token.status().code()),
                                  absl::StrCat("request ", index, ": ", token.status().message()));
      }
      if (state->stream != nullptr) state->stream->MaybeAdvance(lock);
    };
    if (absl::Status s = BindAgentIdentity(auth_, principal_, request_); !s.ok()) {
      done(s);
    } else if (absl::Status limited = limit_.Take(principal_.name); !limited.ok()) {
      done(limited);
    } else {
      router_.Report(request_, std::move(done));
    }
    lock.lock();
    if (state_->in_flight < kMaxInFlightPerStream && !state_->finished) {
      StartRead(&request_);
    } else {
      state_->read_paused = true;
    }
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(state_->mu);
    state_->writing = false;
    if (!ok) {
      // The client went away; nothing more can be written.
      state_->broken = true;
    } else {
      state_->pending.pop_front();
    }
    MaybeAdvance(lock);
  }

  void OnDone() override {
    {
      std::lock_guard lock(state_->mu);
      state_->stream = nullptr;
    }
    delete this;
  }

 private:
  struct Slot {
    uint64_t index;
    bool done;
    v1::ReportStateResponse response;
    grpc::Status error;
  };
  struct State {
    std::mutex mu;
    ReportStream* stream = nullptr;  // null once the reactor is done
    std::deque<Slot> pending;
    uint64_t next_index = 0;
    size_t in_flight = 0;
    bool writing = false;
    bool reading_done = false;
    bool read_paused = false;
    bool finished = false;
    bool broken = false;
  };

  // Writes the next answer in order, resumes reading, or finishes. Called with the lock held.
  void MaybeAdvance(std::unique_lock<std::mutex>& lock) {
    (void)lock;
    State& s = *state_;
    if (s.finished || s.writing) return;
    if (s.broken) {
      s.finished = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading"));
      return;
    }
    if (!s.pending.empty() && s.pending.front().done) {
      Slot& front = s.pending.front();
      if (!front.error.ok()) {
        s.finished = true;
        Finish(front.error);
        return;
      }
      s.writing = true;
      // No buffer hint: gRPC completes a buffered write only once a later write flushes it, and
      // the next write starts only when this one completes (OnWriteDone), so a hinted answer
      // waited forever (WatchTest's ReportStates streams hit their deadlines).
      StartWrite(&front.response);
      return;
    }
    if (s.read_paused && s.in_flight < kMaxInFlightPerStream) {
      s.read_paused = false;
      StartRead(&request_);
      return;
    }
    if (s.reading_done && s.pending.empty()) {
      s.finished = true;
      Finish(grpc::Status::OK);
    }
  }

  Router& router_;
  const auth::Authorizer& auth_;
  auth::ReportRateLimiter& limit_;
  const auth::Principal principal_;
  std::shared_ptr<State> state_;
  v1::ReportStateRequest request_;
};

// A stream refused before it starts (credentials, bad request).
template <typename Reactor>
class Refused final : public Reactor {
 public:
  explicit Refused(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::Status BindAgentIdentity(const auth::Authorizer& auth, const auth::Principal& principal,
                               v1::ReportStateRequest& request) {
  if (!auth.enabled()) return absl::OkStatus();
  if (request.agent_id().empty()) {
    request.set_agent_id(principal.name);
    return absl::OkStatus();
  }
  if (request.agent_id() != principal.name) {
    return absl::PermissionDeniedError(
        absl::StrCat("agent_id: \"", request.agent_id().substr(0, 128),
                     "\" is not the principal of your "
                     "credentials (\"",
                     principal.name, "\"): an agent reports only as itself"));
  }
  return absl::OkStatus();
}

absl::Time CallDeadline(std::chrono::system_clock::time_point deadline, absl::Duration fallback) {
  return std::min(absl::FromChrono(deadline), absl::Now() + fallback);
}

grpc::ServerUnaryReactor* StateService::ReportState(grpc::CallbackServerContext* context,
                                                    const v1::ReportStateRequest* request,
                                                    v1::ReportStateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto principal = auth_.Authorize(context->client_metadata(), auth::kAgent, "ReportState");
  if (!principal.ok()) {
    reactor->Finish(ToGrpcStatus(principal.status()));
    return reactor;
  }
  v1::ReportStateRequest bound = *request;
  if (absl::Status s = BindAgentIdentity(auth_, *principal, bound); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  if (absl::Status s = limits_.reports.Take(principal->name); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  router_.Report(bound, [reactor, response](absl::StatusOr<std::string> token) {
    if (!token.ok()) return reactor->Finish(ToGrpcStatus(token.status()));
    response->set_token(std::move(*token));
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* StateService::ReportBatch(grpc::CallbackServerContext* context,
                                                    const v1::ReportBatchRequest* request,
                                                    v1::ReportBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto principal = auth_.Authorize(context->client_metadata(), auth::kAgent, "ReportBatch");
  if (!principal.ok()) {
    reactor->Finish(ToGrpcStatus(principal.status()));
    return reactor;
  }
  // With auth on, every report is bound to the caller (a copy: the request is gRPC's); without
  // it the request goes as it came, uncopied.
  const v1::ReportBatchRequest* batch = request;
  v1::ReportBatchRequest bound;
  if (auth_.enabled()) {
    bound = *request;
    for (int i = 0; i < bound.reports_size(); ++i) {
      if (absl::Status s = BindAgentIdentity(auth_, *principal, *bound.mutable_reports(i));
          !s.ok()) {
        reactor->Finish(
            ToGrpcStatus(absl::Status(s.code(), absl::StrCat("reports[", i, "].", s.message()))));
        return reactor;
      }
    }
    batch = &bound;
  }
  if (absl::Status s = limits_.reports.Take(principal->name, std::max(1, batch->reports_size()));
      !s.ok()) {
    // A batch larger than the burst is the request's fault: name its field.
    if (absl::IsInvalidArgument(s))
      s = absl::InvalidArgumentError(absl::StrCat("reports: ", s.message()));
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  router_.ReportBatch(*batch, [reactor, response](absl::StatusOr<std::vector<std::string>> tokens) {
    if (!tokens.ok()) return reactor->Finish(ToGrpcStatus(tokens.status()));
    for (std::string& token : *tokens) response->add_tokens(std::move(token));
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerBidiReactor<v1::ReportStateRequest, v1::ReportStateResponse>*
StateService::ReportStates(grpc::CallbackServerContext* context) {
  auto principal = auth_.Authorize(context->client_metadata(), auth::kAgent, "ReportStates");
  if (!principal.ok()) {
    return new Refused<grpc::ServerBidiReactor<v1::ReportStateRequest, v1::ReportStateResponse>>(
        ToGrpcStatus(principal.status()));
  }
  return new ReportStream(router_, auth_, limits_.reports, *std::move(principal));
}

grpc::ServerUnaryReactor* StateService::GetState(grpc::CallbackServerContext* context,
                                                 const v1::GetStateRequest* request,
                                                 v1::GetStateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status s = Allowed(auth_, *context, auth::kReader, "GetState"); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  router_.Get(*request, CallDeadline(context->deadline(), default_deadline_),
              [reactor, response](absl::StatusOr<v1::GetStateResponse> result) {
                if (!result.ok()) return reactor->Finish(ToGrpcStatus(result.status()));
                *response = std::move(*result);
                reactor->Finish(grpc::Status::OK);
              });
  return reactor;
}

grpc::Status StateService::ListState(grpc::ServerContext* context,
                                     const v1::ListStateRequest* request,
                                     v1::ListStateResponse* response) {
  if (grpc::Status s = Allowed(auth_, *context, auth::kReader, "ListState"); !s.ok()) return s;
  auto result = router_.List(*request, CallDeadline(context->deadline(), default_deadline_));
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

void StateService::HandleWatch(watch::WatchCall& call, const grpc::ByteBuffer& raw_request) {
  grpc::ServerContext* context = &call.context();
  v1::WatchStateRequest request;
  grpc::ByteBuffer bytes(raw_request);  // a reference: Deserialize consumes its buffer
  if (bytes.Valid() &&
      !grpc::SerializationTraits<v1::WatchStateRequest>::Deserialize(&bytes, &request).ok()) {
    grpc::Slice slice;
    (void)raw_request.DumpToSingleSlice(&slice);
    return call.Finish(RequestDoesNotParse(
        "/tally.v1.StateService/WatchState", request,
        std::string(reinterpret_cast<const char*>(slice.begin()), slice.size())));
  }
  auto principal = auth_.Authorize(context->client_metadata(), auth::kReader, "WatchState");
  if (!principal.ok()) return call.Finish(ToGrpcStatus(principal.status()));
  auto partitions = router_.CheckWatch(request);
  if (!partitions.ok()) return call.Finish(ToGrpcStatus(partitions.status()));
  std::shared_ptr<void> lease;
  if (absl::Status s = limits_.watches.Acquire(principal->name, &lease); !s.ok()) {
    return call.Finish(ToGrpcStatus(s));
  }
  const absl::Duration snapshot_timeout = std::max(default_deadline_, absl::Seconds(60));
  const Router& router = router_;
  watch::NewWatchStream(
      call, request, *partitions, feed_,
      [&router, snapshot_timeout](
          const internal::v1::ShardSnapshotRequest& snapshot,
          const std::function<bool(const internal::v1::ShardSnapshotResponse&)>& emit) {
        return router.Snapshot(snapshot, absl::Now() + snapshot_timeout, emit);
      },
      watch_options_, std::move(lease));
}

grpc::Status AdminService::SetState(grpc::ServerContext* context,
                                    const v1::SetStateRequest* request,
                                    v1::SetStateResponse* response) {
  if (grpc::Status s = Allowed(auth_, *context, auth::kAdmin, "SetState"); !s.ok()) return s;
  return WaitForWrite(
      CallDeadline(context->deadline(), default_deadline_),
      [&](Router::WriteDone done) { router_.Set(*request, std::move(done)); },
      response->mutable_token());
}

grpc::Status AdminService::PurgeState(grpc::ServerContext* context,
                                      const v1::PurgeStateRequest* request,
                                      v1::PurgeStateResponse* response) {
  if (grpc::Status s = Allowed(auth_, *context, auth::kAdmin, "PurgeState"); !s.ok()) return s;
  return WaitForWrite(
      CallDeadline(context->deadline(), default_deadline_),
      [&](Router::WriteDone done) { router_.Purge(*request, std::move(done)); },
      response->mutable_token());
}

grpc::Status AdminService::DescribeCluster(grpc::ServerContext* context,
                                           const v1::DescribeClusterRequest*,
                                           v1::DescribeClusterResponse* response) {
  if (grpc::Status s = Allowed(auth_, *context, auth::kAdmin, "DescribeCluster"); !s.ok()) return s;
  *response = router_.Describe();
  if (feed_ != nullptr) {
    watch::FeedStats stats = feed_->Stats();
    v1::WatchInfo* info = response->mutable_watch();
    info->set_watchers(stats.watchers);
    info->set_queued_events(stats.queued_events);
    info->set_max_queued_events(stats.max_queued_events);
  }
  return grpc::Status::OK;
}

}  // namespace tally::router
