#include "server/router/tokens.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tally::router {
namespace {

constexpr char kWritePrefix[] = "w1.";
constexpr char kPagePrefix[] = "p1.";

}  // namespace

std::string EncodeWriteToken(const WriteToken& token) {
  return absl::StrCat(kWritePrefix, token.partition, ".", token.offset);
}

absl::StatusOr<WriteToken> ParseWriteToken(const std::string& text, const std::string& field) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", text.substr(0, 64),
        "\" is not a write token (pass the token a ReportState, SetState or PurgeState returned)"));
  };
  absl::string_view view(text);
  if (!absl::ConsumePrefix(&view, kWritePrefix)) return bad();
  std::vector<absl::string_view> parts = absl::StrSplit(view, '.');
  WriteToken token;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &token.partition) ||
      !absl::SimpleAtoi(parts[1], &token.offset) || token.partition < 0 || token.offset < 0) {
    return bad();
  }
  return token;
}

std::string EncodePageToken(const std::string& last_key) {
  return absl::StrCat(kPagePrefix, absl::WebSafeBase64Escape(last_key));
}

absl::StatusOr<std::string> ParsePageToken(const std::string& text) {
  absl::string_view view(text);
  std::string key;
  if (!absl::ConsumePrefix(&view, kPagePrefix) || !absl::WebSafeBase64Unescape(view, &key) ||
      key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: \"", text.substr(0, 64),
                     "\" is not a page token (pass next_page_token of the previous page)"));
  }
  return key;
}

}  // namespace tally::router
