#ifndef TALLY_SERVER_TALLYD_SERVER_H_
#define TALLY_SERVER_TALLYD_SERVER_H_

// Server is one tallyd process: the gRPC listener with its services, plus the roles the config
// enables. The node role serves the internal ShardService and announces itself on <app>.members;
// the router role serves the public StateService and AdminService. Health and reflection are on
// the listener either way. Start() and Stop() are called from one thread (main).

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "server/auth/authorizer.h"
#include "server/auth/limits.h"
#include "server/common/metrics_server.h"
#include "server/node/node.h"
#include "server/node/shard_service.h"
#include "server/router/membership_view.h"
#include "server/router/report_sink.h"
#include "server/router/router.h"
#include "server/router/services.h"
#include "server/watch/change_feed.h"
#include "server/watch/watch_call.h"
#include "tally/config/v1/config.pb.h"

namespace tally {

class Server {
 public:
  explicit Server(config::v1::Config config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener and starts every role. On failure nothing keeps running.
  absl::Status Start();
  // Stops accepting calls, lets running calls finish (bounded), stops the roles. Idempotent.
  void Stop();
  // host:port actually bound (port 0 in the config resolved). Valid after Start().
  const std::string& address() const { return address_; }
  // Re-reads auth.token_file (SIGHUP); the old tokens stay on error. Call after Start().
  absl::Status ReloadAuth();
  // host:port announced to other processes. Valid after Start().
  const std::string& advertise_address() const { return advertise_address_; }

 private:
  absl::Status StartRouter();
  // The Prometheus text of server.metrics_address: shards' roles, offsets and lag; watchers.
  std::string RenderMetrics() const;

  const config::v1::Config config_;
  std::string address_;
  std::string advertise_address_;
  // Node role (null unless node.enabled).
  std::unique_ptr<node::Node> node_;
  std::unique_ptr<node::ShardService> shard_service_;
  // Router role (null unless router.enabled).
  std::unique_ptr<auth::Authorizer> auth_;
  std::unique_ptr<auth::ReportRateLimiter> report_limit_;
  std::unique_ptr<auth::WatchLimiter> watch_limit_;
  std::unique_ptr<router::KafkaReportSink> sink_;
  router::GetBatchStats get_batch_stats_;  // of view_'s node clients
  std::unique_ptr<router::MembershipView> view_;
  std::unique_ptr<router::NodeMembership> node_membership_;  // the node's view of the membership
  std::unique_ptr<common::MetricsServer> metrics_;            // server.metrics_address, if set
  std::unique_ptr<watch::ChangeFeed> feed_;
  std::unique_ptr<router::Router> router_;
  std::unique_ptr<router::StateService> state_service_;
  std::unique_ptr<router::AdminService> admin_service_;
  std::unique_ptr<watch::WatchServer> watch_server_;  // WatchState's queues and their threads
  std::unique_ptr<grpc::Server> grpc_server_;
};

}  // namespace tally

#endif  // TALLY_SERVER_TALLYD_SERVER_H_
