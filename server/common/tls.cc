#include "server/common/tls.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tally::common {

bool TlsEnabled(const config::v1::Tls& tls) { return !tls.cert_file().empty(); }

absl::StatusOr<std::string> ReadPem(const std::string& path, const std::string& field) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(field, ": cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (buffer.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, " is not PEM"));
  }
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const config::v1::Tls& tls) {
  if (!TlsEnabled(tls)) return grpc::InsecureServerCredentials();
  auto cert = ReadPem(tls.cert_file(), "server.tls.cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file(), "server.tls.key_file");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions options(
      tls.require_client_cert() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!tls.ca_file().empty()) {
    auto ca = ReadPem(tls.ca_file(), "server.tls.ca_file");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  options.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerChannelCredentials(
    const config::v1::Tls& tls) {
  if (!TlsEnabled(tls)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  if (!tls.ca_file().empty()) {
    auto ca = ReadPem(tls.ca_file(), "server.tls.ca_file");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  auto cert = ReadPem(tls.cert_file(), "server.tls.cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file(), "server.tls.key_file");
  if (!key.ok()) return key.status();
  options.pem_cert_chain = *cert;
  options.pem_private_key = *key;
  return grpc::SslCredentials(options);
}

}  // namespace tally::common
