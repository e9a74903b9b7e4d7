#ifndef TALLY_SERVER_AUTH_AUTHORIZER_H_
#define TALLY_SERVER_AUTH_AUTHORIZER_H_

// Authorizer decides whether a call may proceed: it reads the bearer token of the call's
// metadata (`authorization: Bearer <token>`), finds its principal in the TokenStore, and checks
// the role the RPC needs. Without a store (auth off) every call passes as principal "".
// Errors: UNAUTHENTICATED (no or unknown token), PERMISSION_DENIED (the principal lacks the
// role). Thread-safe.

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/auth/token_store.h"

namespace tally::auth {

class Authorizer {
 public:
  // `store` may be null: auth off.
  explicit Authorizer(std::unique_ptr<TokenStore> store) : store_(std::move(store)) {}

  bool enabled() const { return store_ != nullptr; }
  absl::StatusOr<Principal> Authorize(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, Role role,
      const char* rpc) const;
  // Re-reads the token file (SIGHUP). OK with auth off.
  absl::Status Reload();

 private:
  const std::unique_ptr<TokenStore> store_;
};

}  // namespace tally::auth

#endif  // TALLY_SERVER_AUTH_AUTHORIZER_H_
