#include "agent/runner/schedule.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "agent/config/config.h"
#include "google/protobuf/util/time_util.h"
#include "server/common/log.h"

namespace tally::agent {

absl::StatusOr<std::unique_ptr<Schedule>> Schedule::Create(const v1::AgentConfig& config,
                                                           const Clock& clock, CheckFactory checks,
                                                           uint64_t seed) {
  std::unique_ptr<Schedule> schedule(new Schedule(config.agent_id(), config.jitter(), clock, seed));
  const absl::Time now = clock.Now();
  for (int i = 0; i < config.watches_size(); ++i) {
    const v1::Watch& w = config.watches(i);
    absl::StatusOr<std::unique_ptr<Check>> check = checks(w.check());
    if (!check.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("watches[", i, "]: ", check.status().message()));
    }
    schedule->watches_.push_back(Watch{w, *std::move(check), ToDuration(w.interval()),
                                       ToDuration(w.ttl()), now, std::nullopt,
                                       absl::InfinitePast()});
  }
  return schedule;
}

Schedule::Schedule(std::string agent_id, double jitter, const Clock& clock, uint64_t seed)
    : agent_id_(std::move(agent_id)), jitter_(jitter), clock_(clock), rng_(seed) {}

absl::Duration Schedule::Jittered(absl::Duration interval) {
  std::uniform_real_distribution<double> u(1.0 - jitter_, 1.0 + jitter_);
  return interval * u(rng_);
}

absl::StatusOr<std::string> Schedule::Observe(Watch& w) {
  absl::StatusOr<std::string> state = w.check->Run();
  // The router would refuse the report (and the outbox drop it); say so here, where the watch's
  // error_state can stand in.
  if (state.ok() && state->size() > 256) {
    state = absl::InvalidArgumentError(
        absl::StrCat("state of ", state->size(), " bytes is longer than 256"));
  } else if (state.ok() && state->find('\0') != std::string::npos) {
    state = absl::InvalidArgumentError("state contains NUL");
  }
  if (state.ok()) return state;
  log::Warn("check yielded no state",
            {{"scenario", w.config.scenario()},
             {"object", w.config.object_key()},
             {"check", w.check->Describe()},
             {"error", state.status().ToString()},
             {"reporting", w.config.error_state().empty() ? "nothing" : w.config.error_state()}});
  if (!w.config.error_state().empty()) return w.config.error_state();
  return state.status();
}

tally::v1::ReportStateRequest Schedule::MakeReport(const Watch& w, const std::string& state,
                                                   absl::Time now) const {
  tally::v1::ReportStateRequest r;
  r.set_scenario(w.config.scenario());
  r.set_object_key(w.config.object_key());
  r.set_agent_id(agent_id_);
  r.set_state(state);
  r.mutable_attributes()->insert(w.config.attributes().begin(), w.config.attributes().end());
  *r.mutable_ttl() = ToProto(w.ttl);
  *r.mutable_observed_at() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
  return r;
}

std::vector<tally::v1::ReportStateRequest> Schedule::RunDue() {
  std::vector<tally::v1::ReportStateRequest> reports;
  for (Watch& w : watches_) {
    if (clock_.Now() < w.next_due) continue;
    absl::StatusOr<std::string> state = Observe(w);
    const absl::Time now = clock_.Now();
    const absl::Duration refresh = w.ttl / 2;
    if (!state.ok()) {
      w.last_state.reset();  // the vote will lapse; report the next state found at once
    } else if (!w.last_state.has_value() || *w.last_state != *state) {
      log::Info("state changed", {{"scenario", w.config.scenario()},
                                  {"object", w.config.object_key()},
                                  {"from", w.last_state.value_or("")},
                                  {"to", *state}});
      reports.push_back(MakeReport(w, *state, now));
      w.last_state = *state;
      w.last_report = now;
    } else if (now - w.last_report >= refresh) {
      log::Debug("refreshing report", {{"scenario", w.config.scenario()},
                                       {"object", w.config.object_key()},
                                       {"state", *state}});
      reports.push_back(MakeReport(w, *state, now));
      w.last_report = now;
    }
    w.next_due = now + Jittered(w.interval);
    if (w.last_state.has_value()) w.next_due = std::min(w.next_due, w.last_report + refresh);
  }
  return reports;
}

absl::Time Schedule::NextDue() const {
  absl::Time next = absl::InfiniteFuture();
  for (const Watch& w : watches_) next = std::min(next, w.next_due);
  return next;
}

std::vector<absl::StatusOr<tally::v1::ReportStateRequest>> Schedule::RunAllOnce() {
  std::vector<absl::StatusOr<tally::v1::ReportStateRequest>> out;
  for (Watch& w : watches_) {
    absl::StatusOr<std::string> state = Observe(w);
    if (state.ok()) {
      out.push_back(MakeReport(w, *state, clock_.Now()));
    } else {
      out.push_back(absl::Status(state.status().code(),
                                 absl::StrCat(w.config.scenario(), "/", w.config.object_key(), ": ",
                                              state.status().message())));
    }
  }
  return out;
}

}  // namespace tally::agent
