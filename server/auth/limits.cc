#include "server/auth/limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tally::auth {

ReportRateLimiter::ReportRateLimiter(double per_second, int burst, std::function<absl::Time()> now)
    : per_second_(per_second), burst_(std::max(1, burst)), now_(std::move(now)) {}

absl::Status ReportRateLimiter::Take(const std::string& principal, int count) {
  if (per_second_ <= 0) return absl::OkStatus();
  if (count > burst_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d reports in one request, more than the burst of %g that principal \"%s\" may send at "
        "once (router.report_burst): send smaller batches",
        count, burst_, principal));
  }
  const absl::Time now = now_();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = buckets_.try_emplace(principal, Bucket{burst_, now});
  Bucket& bucket = it->second;
  bucket.tokens =
      std::min(burst_, bucket.tokens + absl::ToDoubleSeconds(now - bucket.refilled) * per_second_);
  bucket.refilled = now;
  if (bucket.tokens >= count) {
    bucket.tokens -= count;
    return absl::OkStatus();
  }
  const double wait_ms = (count - bucket.tokens) / per_second_ * 1000;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "rate limit: principal \"%s\" may send %g reports/s (burst %g); retry in %.0f ms", principal,
      per_second_, burst_, std::ceil(wait_ms)));
}

absl::Status WatchLimiter::Acquire(const std::string& principal, std::shared_ptr<void>* lease) {
  if (max_ <= 0) {
    *lease = nullptr;
    return absl::OkStatus();
  }
  absl::MutexLock lock(&mu_);
  int& active = active_[principal];
  if (active >= max_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("principal \"", principal, "\" already has ", active,
                     " watches open, the limit (router.max_watches); close one first"));
  }
  ++active;
  *lease = std::shared_ptr<void>(nullptr, [this, principal](void*) {
    absl::MutexLock lock(&mu_);
    if (--active_[principal] == 0) active_.erase(principal);
  });
  return absl::OkStatus();
}

}  // namespace tally::auth
