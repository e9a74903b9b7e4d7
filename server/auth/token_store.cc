#include "server/auth/token_store.h"

#include <openssl/sha.h>

#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tally::auth {

std::string Sha256Hex(const std::string& token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

absl::StatusOr<TokenStore::Entries> TokenStore::Read(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("auth.token_file ", path, ": cannot be read"));
  Entries entries;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = line;
    if (size_t hash = text.find('#'); hash != absl::string_view::npos) text = text.substr(0, hash);
    text = absl::StripAsciiWhitespace(text);
    if (text.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.token_file ", path, " line ", number, ": ", why));
    };
    if (fields.size() != 3) return bad("want <sha256 hex> <principal> <roles>");
    std::string hash = absl::AsciiStrToLower(fields[0]);
    if (hash.size() != 64 || hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return bad("the first field must be the 64 hex digits of the token's SHA-256");
    }
    Principal principal{std::string(fields[1]), 0};
    for (absl::string_view role : absl::StrSplit(fields[2], ',')) {
      if (role == "agent") {
        principal.roles |= kAgent;
      } else if (role == "reader") {
        principal.roles |= kReader;
      } else if (role == "admin") {
        principal.roles |= kAdmin;
      } else {
        return bad(absl::StrCat("unknown role \"", role, "\" (agent, reader, admin)"));
      }
    }
    if (!entries.emplace(hash, std::move(principal)).second) return bad("the token appears twice");
  }
  return entries;
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Load(const std::string& path) {
  std::unique_ptr<TokenStore> store(new TokenStore(path));
  if (absl::Status s = store->Reload(); !s.ok()) return s;
  return store;
}

absl::Status TokenStore::Reload() {
  auto entries = Read(path_);
  if (!entries.ok()) return entries.status();
  entries_.store(std::make_shared<const Entries>(std::move(*entries)));
  return absl::OkStatus();
}

std::optional<Principal> TokenStore::Lookup(const std::string& token) const {
  std::shared_ptr<const Entries> entries = entries_.load();
  auto it = entries->find(Sha256Hex(token));
  if (it == entries->end()) return std::nullopt;
  return it->second;
}

size_t TokenStore::size() const { return entries_.load()->size(); }

}  // namespace tally::auth
