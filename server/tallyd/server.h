#ifndef TALLY_SERVER_TALLYD_SERVER_H_
#define TALLY_SERVER_TALLYD_SERVER_H_

// Server is one tallyd process: the gRPC listener with its services, plus the roles the config
// enables. Start() and Stop() are called from one thread (main).

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "server/node/node.h"
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

 private:
  const config::v1::Config config_;
  std::string address_;
  std::unique_ptr<node::Node> node_;  // null unless node.enabled
  std::unique_ptr<grpc::Server> grpc_server_;
};

}  // namespace tally

#endif  // TALLY_SERVER_TALLYD_SERVER_H_
