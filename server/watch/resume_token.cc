#include "server/watch/resume_token.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tally/internal/v1/shard.pb.h"

namespace tally::watch {
namespace {
constexpr char kPrefix[] = "r1.";
}  // namespace

std::string EncodeResumeToken(const Position& position) {
  internal::v1::WatchPosition proto;
  proto.set_scenario(position.scenario);
  for (int64_t offset : position.offsets) proto.add_offsets(offset);
  return absl::StrCat(kPrefix, absl::WebSafeBase64Escape(proto.SerializeAsString()));
}

absl::StatusOr<Position> ParseResumeToken(const std::string& text, const std::string& scenario,
                                          int32_t partitions) {
  absl::string_view view(text);
  std::string bytes;
  internal::v1::WatchPosition proto;
  if (!absl::ConsumePrefix(&view, kPrefix) || !absl::WebSafeBase64Unescape(view, &bytes) ||
      !proto.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("resume_token: \"", text.substr(0, 64),
                     "\" is not a resume token (pass the resume_token of a WatchState response)"));
  }
  if (proto.scenario() != scenario) {
    return absl::InvalidArgumentError(absl::StrCat("resume_token: belongs to scenario \"",
                                                   proto.scenario(), "\", not \"", scenario, "\""));
  }
  if (proto.offsets_size() != partitions) {
    return absl::InvalidArgumentError(absl::StrCat("resume_token: has ", proto.offsets_size(),
                                                   " partitions, the scenario ", partitions));
  }
  Position position{scenario, {}};
  for (int64_t offset : proto.offsets()) {
    if (offset < 0) return absl::InvalidArgumentError("resume_token: negative offset");
    position.offsets.push_back(offset);
  }
  return position;
}

}  // namespace tally::watch
