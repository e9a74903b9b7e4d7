#ifndef TALLY_TESTS_INTEGRATION_CLUSTER_H_
#define TALLY_TESTS_INTEGRATION_CLUSTER_H_

// A Tally cluster of real tallyd processes for tests: one config (a scenario "demo" with a
// majority reducer), processes started by id with their roles, gRPC stubs to each, and waits on
// DescribeCluster. Not thread-safe, except the stubs (gRPC stubs are).

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/integration/node_harness.h"
#include "tests/testing/temp_dir.h"

namespace tally::test {

class TestCluster {
 public:
  static constexpr char kScenario[] = "demo";

  // `router_fields` go inside the config's router { } (e.g. "watch_max_queued: 100");
  // `extra_config` is appended to the config (e.g. auth { token_file: "..." }).
  // `server_fields` go inside server { } (e.g. a tls { } block).
  // `scenario_fields` go inside the scenario's scenarios { } (e.g. "standby_replicas: 1").
  TestCluster(const std::string& bootstrap, int partitions, const std::string& router_fields = "",
              const std::string& extra_config = "", const std::string& server_fields = "",
              const std::string& scenario_fields = "");

  // The nodes' consumer-group session timeout (node.session_timeout of the config).
  static constexpr absl::Duration kSessionTimeout = absl::Seconds(6);

  // Credentials of the stubs to processes started from now on (default: plaintext).
  void set_channel_credentials(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    credentials_ = std::move(credentials);
  }

  // Starts a process with the node and router roles.
  absl::Status StartNode(const std::string& id);
  // Starts a process with the router role only.
  absl::Status StartRouter(const std::string& id);
  // Starts `id` again with the roles and the data dir it had (after a SIGKILL or SIGTERM); its
  // stubs then reach the new process. The old process must have exited.
  absl::Status Restart(const std::string& id);
  TallydProcess& process(const std::string& id) { return *processes_.at(id); }

  v1::StateService::Stub& state(const std::string& id) { return *state_stubs_.at(id); }
  v1::AdminService::Stub& admin(const std::string& id) { return *admin_stubs_.at(id); }

  absl::StatusOr<v1::DescribeClusterResponse> Describe(const std::string& via);
  // Waits until every partition is ACTIVE and each of `owners` owns one. False on timeout.
  bool WaitAllActive(const std::string& via, const std::set<std::string>& owners,
                     absl::Duration timeout = absl::Seconds(90));
  // True once every partition is ACTIVE and has an active copy and a STANDBY copy on another
  // node that have both applied its reports up to `applied[partition]` (applied_offset, the next
  // report a copy has yet to reflect, at least that: e.g. the offset of the partition's last
  // acknowledged write + 1). A partition missing from `applied` needs only the two copies.
  bool StandbysCaughtUp(const std::string& via, const std::map<int32_t, int64_t>& applied);

  // A bearer token for the cluster's own DescribeCluster calls (when auth is on).
  void set_admin_token(std::string token) { admin_token_ = std::move(token); }
  const std::string& app() const { return app_; }
  const std::string& dir() const { return dir_.path(); }
  int partitions() const { return partitions_; }
  // The last 4000 bytes of every process's log, for failure messages.
  std::string Logs() const;

 private:
  absl::Status Start(const std::string& id, const std::string& config_path);

  TempDir dir_;
  const int partitions_;
  std::string app_;
  std::string node_config_, router_config_;
  std::string admin_token_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::map<std::string, std::unique_ptr<TallydProcess>> processes_;
  std::map<std::string, std::string> config_paths_;  // by id: the config it was started with
  int starts_ = 0;                                   // numbers the log files
  std::map<std::string, std::unique_ptr<v1::StateService::Stub>> state_stubs_;
  std::map<std::string, std::unique_ptr<v1::AdminService::Stub>> admin_stubs_;
};

// A report of `agent`'s `state` of `key` in the cluster's scenario, valid for an hour.
v1::ReportStateRequest ReportRequest(const std::string& key, const std::string& agent,
                                     const std::string& state);

}  // namespace tally::test

#endif  // TALLY_TESTS_INTEGRATION_CLUSTER_H_
