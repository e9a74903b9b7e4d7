#ifndef TALLY_SERVER_AUTH_TOKEN_STORE_H_
#define TALLY_SERVER_AUTH_TOKEN_STORE_H_

// TokenStore maps bearer tokens to principals and their roles, from a file that holds only the
// tokens' SHA-256 hashes:
//   # comment
//   <64 hex digits: sha256 of the token> <principal> <role>[,<role>...]
// Roles: agent, reader, admin. Reload() swaps in the file's current content atomically, or
// keeps the old one and says why (a half-written file never locks everyone out).
//
// Thread safety: Lookup from any thread, concurrently with Reload.

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace tally::auth {

enum Role : uint32_t { kAgent = 1, kReader = 2, kAdmin = 4 };

struct Principal {
  std::string name;
  uint32_t roles = 0;  // bits of Role
  bool Has(Role role) const { return (roles & role) != 0; }
};

// Lower-case hex SHA-256 of `token`.
std::string Sha256Hex(const std::string& token);

class TokenStore {
 public:
  // Loads `path`; INVALID_ARGUMENT naming the line of a malformed entry, NOT_FOUND if unreadable.
  static absl::StatusOr<std::unique_ptr<TokenStore>> Load(const std::string& path);

  // Re-reads the file. On error the previous entries stay in force.
  absl::Status Reload();
  // The principal holding `token`, if any.
  std::optional<Principal> Lookup(const std::string& token) const;
  size_t size() const;

 private:
  using Entries = absl::flat_hash_map<std::string, Principal>;  // by token hash
  explicit TokenStore(std::string path) : path_(std::move(path)) {}
  static absl::StatusOr<Entries> Read(const std::string& path);

  const std::string path_;
  std::atomic<std::shared_ptr<const Entries>> entries_;
};

}  // namespace tally::auth

#endif  // TALLY_SERVER_AUTH_TOKEN_STORE_H_
