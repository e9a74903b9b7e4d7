#include "server/router/read_route.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::router {
namespace {

bool Retryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kAborted ||
         status.code() == absl::StatusCode::kUnavailable;
}

}  // namespace

ReadRoute::ReadRoute(const std::string& scenario, int32_t partition, int64_t max_lag,
                     absl::Time deadline, std::shared_ptr<const RoutingTable> table)
    : scenario_(scenario),
      partition_(partition),
      max_lag_(max_lag),
      deadline_(deadline),
      table_(std::move(table)) {
  PlanCopies();
}

void ReadRoute::Retry(std::shared_ptr<const RoutingTable> table) {
  table_ = std::move(table);
  PlanCopies();
}

void ReadRoute::PlanCopies() {
  copies_.clear();
  next_ = 0;
  const PartitionRoute* route = table_->Find(scenario_, partition_);
  if (route == nullptr) return;
  const absl::Time now = absl::Now();
  ShardClient* active = route->active.has_value() ? route->active->node->client.get() : nullptr;
  const bool active_first = active != nullptr && (max_lag_ == 0 || !active->Unreachable(now));
  if (active_first) copies_.push_back(active);
  if (max_lag_ > 0) {
    for (const Copy& standby : route->standbys) {  // least lag first
      if (standby.lag() <= max_lag_ && standby.node->client != nullptr) {
        copies_.push_back(standby.node->client.get());
      }
    }
    std::stable_partition(copies_.begin() + (active_first ? 1 : 0), copies_.end(),
                          [now](const ShardClient* c) { return !c->Unreachable(now); });
  }
  if (active != nullptr && !active_first) copies_.push_back(active);
  if (copies_.empty() && !route->restoring.empty()) {
    last_ = absl::UnavailableError(absl::StrCat(
        "partition ", partition_, " of scenario ", scenario_, " is restoring on node ",
        route->restoring.front().node->member.node_id(), "; retry"));
  }
}

std::optional<ReadRoute::Attempt> ReadRoute::Next() {
  if (next_ == copies_.size()) return std::nullopt;
  ShardClient* client = copies_[next_++];
  // A slice of the deadline when another copy could answer instead.
  const bool sliced = next_ < copies_.size();
  return Attempt{client, sliced ? std::min(deadline_, absl::Now() + kAttemptTimeout) : deadline_};
}

bool ReadRoute::Settled(const Attempt& attempt, const absl::Status& status) {
  const bool slice_ran_out = absl::IsDeadlineExceeded(status) && attempt.deadline < deadline_;
  if (status.ok() || (!Retryable(status) && !slice_ran_out)) return true;
  if (slice_ran_out || absl::IsUnavailable(status)) {
    attempt.client->MarkUnreachable(absl::Now() + kUnreachableFor);
  }
  last_ = status;
  return false;
}

absl::Status ReadRoute::LastError() const {
  if (last_.ok()) {  // no copy was ever tried
    return absl::UnavailableError(absl::StrCat("no alive node holds partition ", partition_,
                                               " of scenario ", scenario_, "; retry"));
  }
  if (last_.code() == absl::StatusCode::kAborted) {
    // Callers retry UNAVAILABLE; ABORTED is internal to the routing protocol.
    return absl::UnavailableError(absl::StrCat(last_.message(), "; retry"));
  }
  return last_;
}

}  // namespace tally::router
