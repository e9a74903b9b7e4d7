#include "server/node/shard_files.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"

namespace tally::node {

absl::StatusOr<std::shared_ptr<storage::Shard>> ShardFiles::Open(const std::string& scenario,
                                                                 int32_t partition) {
  const std::string dir = absl::StrCat(config_.node().data_dir(), "/", scenario, "/", partition);
  absl::MutexLock lock(&mu_);
  std::weak_ptr<storage::Shard>& slot = open_[dir];
  if (std::shared_ptr<storage::Shard> alive = slot.lock()) return alive;
  auto shard = OpenDir(dir);
  if (!shard.ok()) return shard.status();
  std::shared_ptr<storage::Shard> shared(std::move(*shard));
  slot = shared;
  return shared;
}

absl::StatusOr<std::unique_ptr<storage::Shard>> ShardFiles::OpenDir(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create shard dir ", dir, ": ", ec.message()));
  }
  storage::ShardOptions options;
  options.initial_map_size = static_cast<uint64_t>(config_.node().shard_map_size_mib()) << 20;
  auto shard = storage::Shard::Open(dir, options);
  if (!shard.ok() && shard.status().code() == absl::StatusCode::kFailedPrecondition &&
      absl::StrContains(shard.status().message(), "schema version")) {
    // A shard written by another release: the changelog holds everything it held, so set it
    // aside (not deleted: an operator may want it back) and restore a fresh one.
    std::string aside = absl::StrCat(dir, ".schema-mismatch-", absl::ToUnixMillis(absl::Now()));
    log::Warn("shard of another schema version set aside; restoring from the changelog",
              {{"dir", dir}, {"moved_to", aside}, {"error", shard.status().ToString()}});
    std::filesystem::rename(dir, aside, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot move ", dir, " aside: ", ec.message(), " (", shard.status().message(), ")"));
    }
    std::filesystem::create_directories(dir, ec);
    shard = storage::Shard::Open(dir, options);
  }
  return shard;
}

}  // namespace tally::node
