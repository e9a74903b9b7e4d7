#include "server/auth/authorizer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tally::auth {
namespace {

const char* RoleName(Role role) {
  switch (role) {
    case kAgent:
      return "agent";
    case kReader:
      return "reader";
    case kAdmin:
      return "admin";
  }
  return "?";
}

}  // namespace

absl::StatusOr<Principal> Authorizer::Authorize(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, Role role,
    const char* rpc) const {
  if (store_ == nullptr) return Principal{"", kAgent | kReader | kAdmin};
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "no credentials: send the metadata \"authorization: Bearer <token>\"");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") || value.empty()) {
    return absl::UnauthenticatedError("authorization: want \"Bearer <token>\"");
  }
  std::optional<Principal> principal = store_->Lookup(std::string(value));
  if (!principal.has_value()) return absl::UnauthenticatedError("unknown token");
  if (!principal->Has(role)) {
    return absl::PermissionDeniedError(absl::StrCat("principal \"", principal->name,
                                                    "\" lacks the role ", RoleName(role), " that ",
                                                    rpc, " needs"));
  }
  return *principal;
}

absl::Status Authorizer::Reload() {
  if (store_ == nullptr) return absl::OkStatus();
  return store_->Reload();
}

}  // namespace tally::auth
