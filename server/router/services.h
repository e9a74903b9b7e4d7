#ifndef TALLY_SERVER_ROUTER_SERVICES_H_
#define TALLY_SERVER_ROUTER_SERVICES_H_

// The public gRPC services over a Router: proto in, proto out, absl::Status → grpc::Status.
// ReportState, ReportStates, ReportBatch and GetState use gRPC's callback API: a call holds no
// thread while Kafka confirms the write or while the owner answers the read. ListState blocks a
// thread of the synchronous pool. Reads may wait for min_token, within the call's deadline (or
// router.default_deadline when the call has none).

#include "absl/time/time.h"
#include "server/auth/authorizer.h"
#include "server/auth/limits.h"
#include "server/router/router.h"
#include "server/watch/change_feed.h"
#include "server/watch/watch_stream.h"
#include "tally/v1/state.grpc.pb.h"

namespace tally::router {

// The per-principal limits the public services enforce; both must outlive the services.
struct Limits {
  auth::ReportRateLimiter& reports;
  auth::WatchLimiter& watches;
};

class StateService final
    : public v1::StateService::WithCallbackMethod_ReportState<
          v1::StateService::WithCallbackMethod_ReportStates<
              v1::StateService::WithCallbackMethod_ReportBatch<
                  v1::StateService::WithCallbackMethod_GetState<
                      v1::StateService::WithRawMethod_WatchState<v1::StateService::Service>>>>> {
 public:
  // `router`, `feed` and `auth` must outlive the service.
  StateService(Router& router, watch::ChangeFeed& feed, const auth::Authorizer& auth, Limits limits,
               absl::Duration default_deadline, watch::WatchOptions watch_options = {})
      : router_(router),
        feed_(feed),
        auth_(auth),
        limits_(limits),
        default_deadline_(default_deadline),
        watch_options_(watch_options) {}

  grpc::ServerUnaryReactor* ReportState(grpc::CallbackServerContext* context,
                                        const v1::ReportStateRequest* request,
                                        v1::ReportStateResponse* response) override;
  grpc::ServerBidiReactor<v1::ReportStateRequest, v1::ReportStateResponse>* ReportStates(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ReportBatch(grpc::CallbackServerContext* context,
                                        const v1::ReportBatchRequest* request,
                                        v1::ReportBatchResponse* response) override;
  grpc::ServerUnaryReactor* GetState(grpc::CallbackServerContext* context,
                                     const v1::GetStateRequest* request,
                                     v1::GetStateResponse* response) override;
  grpc::Status ListState(grpc::ServerContext* context, const v1::ListStateRequest* request,
                         v1::ListStateResponse* response) override;
  // WatchState is raw, on the completion-queue API (see watch::WatchServer, which calls this for
  // each call, and RequestWatchState): the stream writes serialized WatchStateResponse
  // messages, so one event's bytes serve all its watchers (see watch::NewWatchStream).
  void HandleWatch(watch::WatchCall& call, const grpc::ByteBuffer& request);

 private:
  Router& router_;
  watch::ChangeFeed& feed_;
  const auth::Authorizer& auth_;
  const Limits limits_;
  const absl::Duration default_deadline_;
  const watch::WatchOptions watch_options_;
};

class AdminService final : public v1::AdminService::Service {
 public:
  // `feed` may be null (no watch statistics).
  AdminService(Router& router, const watch::ChangeFeed* feed, const auth::Authorizer& auth,
               absl::Duration default_deadline)
      : router_(router), feed_(feed), auth_(auth), default_deadline_(default_deadline) {}

  grpc::Status SetState(grpc::ServerContext* context, const v1::SetStateRequest* request,
                        v1::SetStateResponse* response) override;
  grpc::Status PurgeState(grpc::ServerContext* context, const v1::PurgeStateRequest* request,
                          v1::PurgeStateResponse* response) override;
  grpc::Status DescribeCluster(grpc::ServerContext* context,
                               const v1::DescribeClusterRequest* request,
                               v1::DescribeClusterResponse* response) override;

 private:
  Router& router_;
  const watch::ChangeFeed* feed_;
  const auth::Authorizer& auth_;
  const absl::Duration default_deadline_;
};

// With auth on, an agent reports only as itself: an empty agent_id becomes the principal, another
// one is PERMISSION_DENIED (nothing is written). `request` is changed in place.
absl::Status BindAgentIdentity(const auth::Authorizer& auth, const auth::Principal& principal,
                               v1::ReportStateRequest& request);

// The deadline a call must keep: its own, or now + `fallback` when it has none.
absl::Time CallDeadline(std::chrono::system_clock::time_point deadline, absl::Duration fallback);

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_SERVICES_H_
