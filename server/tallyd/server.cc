#include "server/tallyd/server.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpc/health/v1/health.pb.h"
#include "server/common/log.h"

namespace tally {

Server::Server(config::v1::Config config) : config_(std::move(config)) {}

Server::~Server() { Stop(); }

absl::Status Server::Start() {
  // Links the health descriptor in so reflection can describe gRPC's built-in health service.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  if (config_.node().enabled()) {
    node_ = std::make_unique<node::Node>(config_);
    if (absl::Status s = node_->Start(); !s.ok()) {
      node_.reset();
      return s;
    }
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string& listen = config_.server().listen_address();
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  log::Warn("listener is plaintext (no TLS configured): for local development only",
            {{"address", listen}});
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port == 0) {
    grpc_server_.reset();
    node_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on server.listen_address \"", listen, "\""));
  }
  std::string host = listen.substr(0, listen.rfind(':'));
  address_ = absl::StrCat(host, ":", port);
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  return absl::OkStatus();
}

void Server::Stop() {
  if (grpc_server_ != nullptr) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc_server_->Wait();
    grpc_server_.reset();
  }
  node_.reset();  // stops the processor and closes the shards
}

}  // namespace tally
