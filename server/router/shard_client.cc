#include "server/router/shard_client.h"

#include "absl/strings/str_cat.h"

namespace tally::router {
namespace {

class GrpcShardClient final : public ShardClient {
 public:
  GrpcShardClient(const std::string& endpoint,
                  std::shared_ptr<grpc::ChannelCredentials> credentials)
      : endpoint_(endpoint),
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
    CallAsync(request, deadline, std::move(done), [this](auto* context, auto* request,
                                                         auto* response, auto callback) {
      stub_->async()->Get(context, request, response, std::move(callback));
    });
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
      std::unique_ptr<Call> owned(call);
      if (!status.ok()) return owned->done(Annotate(status));
      owned->done(std::move(owned->response));
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
    if (s.code() == absl::StatusCode::kUnavailable) {
      // The transport's message alone ("failed to connect to all addresses") does not say which.
      return absl::UnavailableError(absl::StrCat("node at ", endpoint_, ": ", s.message()));
    }
    return s;
  }

  const std::string endpoint_;
  const std::unique_ptr<internal::v1::ShardService::Stub> stub_;
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
    const std::string& endpoint, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  return std::make_shared<GrpcShardClient>(endpoint, std::move(credentials));
}

std::shared_ptr<ShardClient> NewLocalShardClient(const node::ShardQueries& queries) {
  return std::make_shared<LocalShardClient>(queries);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace tally::router
