#include "server/node/shard_service.h"

#include <algorithm>

namespace tally::node {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerUnaryReactor* ShardService::Get(grpc::CallbackServerContext* context,
                                            const internal::v1::ShardGetRequest* request,
                                            internal::v1::ShardGetResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline =
      std::min(absl::FromChrono(context->deadline()), absl::Now() + max_wait_);
  // The server's shutdown waits for every reactor to finish, so queries_ outlives the call.
  queries_.GetAsync(*request, deadline,
                    [reactor, response](absl::StatusOr<internal::v1::ShardGetResponse> result) {
                      if (!result.ok()) return reactor->Finish(ToGrpcStatus(result.status()));
                      *response = std::move(*result);
                      reactor->Finish(grpc::Status::OK);
                    });
  return reactor;
}

grpc::Status ShardService::Scan(grpc::ServerContext*, const internal::v1::ShardScanRequest* request,
                                internal::v1::ShardScanResponse* response) {
  auto result = queries_.Scan(*request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status ShardService::Snapshot(
    grpc::ServerContext* context, const internal::v1::ShardSnapshotRequest* request,
    grpc::ServerWriter<internal::v1::ShardSnapshotResponse>* writer) {
  return ToGrpcStatus(queries_.Snapshot(*request, [&](const internal::v1::ShardSnapshotResponse& r) {
    return !context->IsCancelled() && writer->Write(r);
  }));
}

}  // namespace tally::node
