#include "tests/integration/cluster.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tests/testing/unique_name.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

void WriteConfig(const std::string& path, const std::string& app, const std::string& bootstrap,
                 int partitions, bool node, const std::string& router_fields,
                 const std::string& extra, const std::string& server_fields,
                 const std::string& scenario_fields) {
  std::ofstream out(path);
  out << "app_id: \"" << app << "\"\n"
      << "kafka { bootstrap_servers: \"" << bootstrap << "\" }\n"
      << "scenarios { name: \"" << TestCluster::kScenario << "\" partitions: " << partitions
      << " reducer { majority {} } " << scenario_fields << " }\n"
      << "node { enabled: " << (node ? "true" : "false")
      << " data_dir: \"unused\" node_id: \"unused\" "
      << "session_timeout { seconds: " << absl::ToInt64Seconds(TestCluster::kSessionTimeout)
      << " } heartbeat_interval { nanos: 200000000 } }\n"
      << "router { enabled: true " << router_fields << " }\n"
      << "server { listen_address: \"127.0.0.1:0\" " << server_fields << " }\n"
      << extra << "\n";
}

}  // namespace

TestCluster::TestCluster(const std::string& bootstrap, int partitions,
                         const std::string& router_fields, const std::string& extra_config,
                         const std::string& server_fields, const std::string& scenario_fields)
    : partitions_(partitions), app_(UniqueName("cluster")) {
  node_config_ = absl::StrCat(dir_.path(), "/node.textproto");
  router_config_ = absl::StrCat(dir_.path(), "/router.textproto");
  WriteConfig(node_config_, app_, bootstrap, partitions, true, router_fields, extra_config,
              server_fields, scenario_fields);
  WriteConfig(router_config_, app_, bootstrap, partitions, false, router_fields, extra_config,
              server_fields, scenario_fields);
}

absl::Status TestCluster::StartNode(const std::string& id) { return Start(id, node_config_); }
absl::Status TestCluster::StartRouter(const std::string& id) { return Start(id, router_config_); }

absl::Status TestCluster::Restart(const std::string& id) {
  auto it = config_paths_.find(id);
  if (it == config_paths_.end()) return absl::NotFoundError(absl::StrCat("no process ", id));
  if (processes_.at(id)->running()) {
    return absl::FailedPreconditionError(absl::StrCat(id, " still runs"));
  }
  return Start(id, it->second);
}

absl::Status TestCluster::Start(const std::string& id, const std::string& config_path) {
  auto process = std::make_unique<TallydProcess>(
      config_path, id, absl::StrCat(dir_.path(), "/", id),
      absl::StrCat(dir_.path(), "/", id, "-", starts_++, ".log"));
  config_paths_[id] = config_path;
  if (absl::Status s = process->Start(); !s.ok()) return s;
  auto channel = grpc::CreateChannel(process->address(), credentials_ != nullptr
                                                             ? credentials_
                                                             : grpc::InsecureChannelCredentials());
  state_stubs_[id] = v1::StateService::NewStub(channel);
  admin_stubs_[id] = v1::AdminService::NewStub(channel);
  processes_[id] = std::move(process);
  return absl::OkStatus();
}

absl::StatusOr<v1::DescribeClusterResponse> TestCluster::Describe(const std::string& via) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!admin_token_.empty()) context.AddMetadata("authorization", "Bearer " + admin_token_);
  v1::DescribeClusterResponse response;
  grpc::Status status = admin(via).DescribeCluster(&context, {}, &response);
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  return response;
}

bool TestCluster::WaitAllActive(const std::string& via, const std::set<std::string>& owners,
                                absl::Duration timeout) {
  return WaitFor(
      [&] {
        auto cluster = Describe(via);
        if (!cluster.ok()) return false;
        std::set<std::string> seen;
        int active = 0;
        for (const v1::PartitionInfo& p : cluster->partitions()) {
          if (p.status() == v1::ACTIVE) ++active;
          seen.insert(p.active_node());
        }
        for (const std::string& id : owners) {
          if (!seen.count(id)) return false;
        }
        return active == partitions_;
      },
      timeout);
}

bool TestCluster::StandbysCaughtUp(const std::string& via,
                                   const std::map<int32_t, int64_t>& applied) {
  auto cluster = Describe(via);
  if (!cluster.ok()) return false;
  for (const v1::PartitionInfo& p : cluster->partitions()) {
    if (p.status() != v1::ACTIVE) return false;
    auto it = applied.find(p.partition());
    const int64_t needed = it == applied.end() ? 0 : it->second;
    bool active = false, standby = false;
    for (const v1::CopyInfo& copy : p.copies()) {
      if (copy.applied_offset() < needed) continue;
      active |= copy.status() == v1::ACTIVE;
      standby |= copy.status() == v1::STANDBY && copy.node() != p.active_node();
    }
    if (!active || !standby) return false;
  }
  return true;
}

std::string TestCluster::Logs() const {
  std::string out;
  for (const auto& [id, process] : processes_) {
    std::string log = process->Log();
    absl::StrAppend(&out, "---- ", id, " ----\n",
                    log.substr(log.size() > 4000 ? log.size() - 4000 : 0), "\n");
  }
  return out;
}

v1::ReportStateRequest ReportRequest(const std::string& key, const std::string& agent,
                                     const std::string& state) {
  v1::ReportStateRequest request;
  request.set_scenario(TestCluster::kScenario);
  request.set_object_key(key);
  request.set_agent_id(agent);
  request.set_state(state);
  request.mutable_ttl()->set_seconds(3600);
  return request;
}

}  // namespace tally::test
