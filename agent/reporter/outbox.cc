#include "agent/reporter/outbox.h"

#include <algorithm>

#include "server/common/log.h"

namespace tally::agent {

Outbox::Outbox(Spool& spool, ReportSender& sender, const Clock& clock, OutboxOptions options)
    : spool_(spool),
      sender_(sender),
      clock_(clock),
      options_(options),
      backoff_(options.backoff, options.seed) {
  absl::MutexLock lock(&mu_);
  out_ = !spool_.empty();
  stats_.out = out_;
}

void Outbox::AppendToSpoolLocked(const std::vector<tally::v1::ReportStateRequest>& reports) {
  if (reports.empty()) return;
  size_t queued = 0;
  absl::Status s = spool_.Append(reports, &queued);
  stats_.spooled += static_cast<int64_t>(queued);
  if (!s.ok()) {
    const int64_t lost = static_cast<int64_t>(reports.size() - queued);
    stats_.lost += lost;
    log::Error("reports not spooled: lost",
               {{"lost", lost}, {"lost_total", stats_.lost}, {"error", s.ToString()}});
  }
}

void Outbox::SpillLocked() {
  std::vector<tally::v1::ReportStateRequest> all(std::make_move_iterator(pending_.begin()),
                                                 std::make_move_iterator(pending_.end()));
  pending_.clear();
  out_ = true;
  stats_.out = true;
  AppendToSpoolLocked(all);
}

void Outbox::Submit(std::vector<tally::v1::ReportStateRequest> reports) {
  if (reports.empty()) return;
  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return out_ || pending_.size() < options_.max_pending;
  };
  mu_.Await(absl::Condition(&room));
  if (out_) {
    AppendToSpoolLocked(reports);
    return;
  }
  for (auto& r : reports) pending_.push_back(std::move(r));
}

absl::Time Outbox::DeliverOnce() {
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    if (now < retry_at_) return retry_at_;
  }
  // Only this thread empties the spool or marks the outbox out, so `out` cannot change under us.
  if (!spool_.empty()) return DeliverFromSpool(now);
  return DeliverFromMemory(now);
}

absl::Time Outbox::DeliverFromSpool(absl::Time now) {
  std::vector<SpooledReport> batch = spool_.Peek(options_.max_batch);
  if (batch.empty()) return now;  // the spool skipped unreadable records
  std::vector<tally::v1::ReportStateRequest> reports;
  reports.reserve(batch.size());
  for (SpooledReport& r : batch) reports.push_back(std::move(r.report));  // batch keeps the ids
  SendResult result = sender_.Send(reports);
  size_t done = result.delivered;
  if (absl::IsInvalidArgument(result.status) && done < batch.size()) {
    const tally::v1::ReportStateRequest& bad = reports[done];
    log::Error("router refused a report: dropped", {{"scenario", bad.scenario()},
                                                    {"object", bad.object_key()},
                                                    {"state", bad.state()},
                                                    {"error", result.status.ToString()}});
    absl::MutexLock lock(&mu_);
    ++stats_.refused_invalid;
    ++done;
  }
  if (done > 0) {
    if (absl::Status s = spool_.Acknowledge(batch[done - 1].id); !s.ok()) {
      log::Error("cannot acknowledge delivered reports in the spool; they will be sent again",
                 {{"error", s.ToString()}});
    }
  }
  absl::MutexLock lock(&mu_);
  stats_.delivered += static_cast<int64_t>(result.delivered);
  if (!result.status.ok() && !absl::IsInvalidArgument(result.status)) {
    return FailedLocked(now, result.status);
  }
  backoff_.Reset();
  if (out_ && spool_.empty()) {
    out_ = false;
    stats_.out = false;
    log::Info("routers back: spool delivered", {{"delivered_total", stats_.delivered}});
  }
  return now;
}

absl::Time Outbox::DeliverFromMemory(absl::Time now) {
  std::vector<tally::v1::ReportStateRequest> batch;
  {
    absl::MutexLock lock(&mu_);
    if (pending_.empty()) return absl::InfiniteFuture();
    const size_t n = std::min(options_.max_batch, pending_.size());
    batch.assign(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(n));
  }
  // The batch stays at the front of pending_ while in flight: Submit only appends behind it, and
  // only this thread removes from the front.
  SendResult result = sender_.Send(batch);
  absl::MutexLock lock(&mu_);
  size_t done = result.delivered;
  stats_.delivered += static_cast<int64_t>(done);
  if (absl::IsInvalidArgument(result.status) && done < batch.size()) {
    log::Error("router refused a report: dropped", {{"scenario", batch[done].scenario()},
                                                    {"object", batch[done].object_key()},
                                                    {"state", batch[done].state()},
                                                    {"error", result.status.ToString()}});
    ++stats_.refused_invalid;
    ++done;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(done));
  if (result.status.ok() || absl::IsInvalidArgument(result.status)) {
    backoff_.Reset();
    return now;
  }
  log::Warn("no router reachable: spooling reports", {{"moved_to_spool", pending_.size()}});
  SpillLocked();
  return FailedLocked(now, result.status);
}

absl::Time Outbox::FailedLocked(absl::Time now, const absl::Status& status) {
  ++stats_.failed_sends;
  const absl::Duration wait = backoff_.Next();
  retry_at_ = now + wait;
  log::Warn("delivery failed; retrying", {{"error", status.ToString()},
                                          {"attempt", backoff_.failures()},
                                          {"retry_in", absl::FormatDuration(wait)},
                                          {"spooled_records", spool_.Stats().records}});
  return retry_at_;
}

void Outbox::Wait(absl::Time until) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return woken_ || (!out_ && !pending_.empty() && clock_.Now() >= retry_at_);
  };
  const absl::Duration timeout = until - clock_.Now();
  if (timeout > absl::ZeroDuration()) mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  woken_ = false;
}

void Outbox::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void Outbox::Flush() {
  absl::MutexLock lock(&mu_);
  if (pending_.empty()) return;
  log::Info("spooling undelivered reports for the next start", {{"reports", pending_.size()}});
  SpillLocked();
}

OutboxStats Outbox::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace tally::agent
