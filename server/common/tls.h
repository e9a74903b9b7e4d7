#ifndef TALLY_SERVER_COMMON_TLS_H_
#define TALLY_SERVER_COMMON_TLS_H_

// gRPC credentials from tally.config.v1.Tls: the listener's, and those a router uses to reach
// nodes (presenting this process's certificate, for mutual TLS). Plaintext when no certificate
// is configured.

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "tally/config/v1/config.pb.h"

namespace tally::common {

bool TlsEnabled(const config::v1::Tls& tls);
// NOT_FOUND naming the field of a file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const config::v1::Tls& tls);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerChannelCredentials(
    const config::v1::Tls& tls);
// A whole file; NOT_FOUND naming `field` if unreadable.
absl::StatusOr<std::string> ReadPem(const std::string& path, const std::string& field);

}  // namespace tally::common

#endif  // TALLY_SERVER_COMMON_TLS_H_
