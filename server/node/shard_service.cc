#include "server/node/shard_service.h"

#include <algorithm>
#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"

namespace tally::node {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Time ShardService::Deadline(const grpc::CallbackServerContext& context) const {
  return std::min(absl::FromChrono(context.deadline()), absl::Now() + max_wait_);
}

grpc::ServerUnaryReactor* ShardService::Get(grpc::CallbackServerContext* context,
                                            const internal::v1::ShardGetRequest* request,
                                            internal::v1::ShardGetResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = Deadline(*context);
  // The server's shutdown waits for every reactor to finish, so queries_ outlives the call.
  queries_.GetAsync(*request, deadline,
                    [reactor, response](absl::StatusOr<internal::v1::ShardGetResponse> result) {
                      if (!result.ok()) return reactor->Finish(ToGrpcStatus(result.status()));
                      *response = std::move(*result);
                      reactor->Finish(grpc::Status::OK);
                    });
  return reactor;
}

grpc::ServerUnaryReactor* ShardService::GetBatch(grpc::CallbackServerContext* context,
                                                 const internal::v1::ShardGetBatchRequest* request,
                                                 internal::v1::ShardGetBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const int n = request->gets_size();
  if (n > kMaxGetBatch) {
    reactor->Finish(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("gets: at most ", kMaxGetBatch, " items in one call, got ", n)));
    return reactor;
  }
  if (n == 0) {
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  // Every result exists before any item is answered: the answers, possibly on different
  // threads, each fill their own element and never grow the field.
  response->mutable_results()->Reserve(n);
  for (int i = 0; i < n; ++i) response->add_results();
  const absl::Time deadline = Deadline(*context);
  auto remaining = std::make_shared<std::atomic<int>>(n);
  for (int i = 0; i < n; ++i) {
    queries_.GetAsync(
        request->gets(i), deadline,
        [reactor, result = response->mutable_results(i),
         remaining](absl::StatusOr<internal::v1::ShardGetResponse> answer) {
          if (answer.ok()) {
            *result->mutable_response() = std::move(*answer);
          } else {
            result->set_code(static_cast<int32_t>(answer.status().code()));
            result->set_message(std::string(answer.status().message()));
          }
          // The last answer finishes the call; acq_rel makes every other answer's writes visible.
          if (remaining->fetch_sub(1, std::memory_order_acq_rel) == 1) {
            reactor->Finish(grpc::Status::OK);
          }
        });
  }
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
