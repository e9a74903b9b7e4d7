#include "server/processor/object_update.h"

#include <algorithm>
#include <vector>

#include "google/protobuf/util/message_differencer.h"

namespace tally::processor {
namespace {

using records::v1::ChangeCause;
using records::v1::ReportKind;
using records::v1::Vote;

// Removes votes with expires_at <= now. Returns whether any was removed.
bool DropExpired(std::vector<Vote>& votes, int64_t now_ms) {
  auto end = std::remove_if(votes.begin(), votes.end(),
                            [now_ms](const Vote& v) { return v.expires_at_ms() <= now_ms; });
  bool dropped = end != votes.end();
  votes.erase(end, votes.end());
  return dropped;
}

std::string Reduce(const Reducer& reducer, const std::vector<Vote>& votes,
                   const std::string& previous) {
  std::vector<LiveVote> live;
  live.reserve(votes.size());
  for (const Vote& v : votes) {
    live.push_back(LiveVote{v.agent_id(), v.state(), v.observed_at_ms()});
  }
  return reducer.Reduce(live, previous);
}

void Retally(storage::ObjectData& data) {
  auto* tally = data.state.mutable_tally();
  tally->clear();
  for (const Vote& v : data.votes) ++(*tally)[v.state()];
}

// Finishes an update: retallies, bumps the version and emits the event if state or pin changed,
// and decides whether anything needs writing. `votes_changed`: the votes of `after` differ from
// those of `before` (the callers know which vote they touched, so no vote is compared here).
ObjectUpdate Finish(const std::optional<storage::ObjectData>& before, storage::ObjectData after,
                    bool votes_changed, const std::string& scenario, const std::string& object_key,
                    ChangeCause cause, int64_t now_ms) {
  Retally(after);
  const std::string old_state = before ? before->state.state() : "";
  const bool old_pinned = before ? before->state.pinned() : false;
  ObjectUpdate update;
  if (after.state.state() != old_state || after.state.pinned() != old_pinned) {
    after.state.set_version((before ? before->state.version() : 0) + 1);
    after.state.set_updated_at_ms(now_ms);
    records::v1::ChangeEvent& event = update.event.emplace();
    event.set_scenario(scenario);
    event.set_object_key(object_key);
    event.set_old_state(old_state);
    event.set_new_state(after.state.state());
    event.set_version(after.state.version());
    event.set_time_ms(now_ms);
    event.set_cause(cause);
    event.set_pinned(after.state.pinned());
  }
  update.changed = !before.has_value() || votes_changed ||
                   !google::protobuf::util::MessageDifferencer::Equals(before->state, after.state);
  update.data = std::move(after);
  return update;
}

}  // namespace

ObjectUpdate ApplyRecord(const Reducer& reducer, const std::optional<storage::ObjectData>& current,
                         const records::v1::ReportRecord& record, int64_t now_ms) {
  if (record.kind() == ReportKind::REPORT_KIND_PURGE) {
    ObjectUpdate update;
    if (!current) return update;  // nothing to purge
    update.changed = true;
    update.deleted = true;
    if (!current->state.state().empty() || current->state.pinned()) {
      records::v1::ChangeEvent& event = update.event.emplace();
      event.set_scenario(record.scenario());
      event.set_object_key(record.object_key());
      event.set_old_state(current->state.state());
      event.set_version(current->state.version() + 1);
      event.set_time_ms(now_ms);
      event.set_cause(ChangeCause::CHANGE_CAUSE_PURGE);
    }
    return update;
  }

  storage::ObjectData next = current.value_or(storage::ObjectData{});
  bool votes_changed = DropExpired(next.votes, now_ms);
  ChangeCause cause = ChangeCause::CHANGE_CAUSE_REPORT;

  if (record.kind() == ReportKind::REPORT_KIND_REPORT) {
    auto it = std::lower_bound(
        next.votes.begin(), next.votes.end(), record.agent_id(),
        [](const Vote& v, const std::string& agent) { return v.agent_id() < agent; });
    bool exists = it != next.votes.end() && it->agent_id() == record.agent_id();
    int64_t expires_at = record.observed_at_ms() + record.ttl_ms();
    if (expires_at <= now_ms) {
      if (exists) {
        next.votes.erase(it);
        votes_changed = true;
      }
    } else {
      Vote vote;
      vote.set_agent_id(record.agent_id());
      vote.set_state(record.state());
      *vote.mutable_attributes() = record.attributes();
      vote.set_observed_at_ms(record.observed_at_ms());
      vote.set_expires_at_ms(expires_at);
      if (!exists) {
        next.votes.insert(it, std::move(vote));
        votes_changed = true;
      } else if (!google::protobuf::util::MessageDifferencer::Equals(*it, vote)) {
        *it = std::move(vote);
        votes_changed = true;
      }
    }
    if (!next.state.pinned()) {
      next.state.set_state(Reduce(reducer, next.votes, next.state.state()));
    }
  } else {  // SET
    cause = ChangeCause::CHANGE_CAUSE_SET;
    next.state.set_pinned(record.pin());
    next.state.set_pin_reason(record.pin() ? record.reason() : "");
    if (record.pin() || !record.state().empty()) {
      next.state.set_state(record.state());
    } else {
      next.state.set_state(Reduce(reducer, next.votes, next.state.state()));
    }
  }
  return Finish(current, std::move(next), votes_changed, record.scenario(), record.object_key(),
                cause, now_ms);
}

ObjectUpdate ExpireVotes(const Reducer& reducer, const std::string& scenario,
                         const std::string& object_key, const storage::ObjectData& current,
                         int64_t now_ms) {
  storage::ObjectData next = current;
  if (!DropExpired(next.votes, now_ms)) return ObjectUpdate{};
  if (!next.state.pinned()) {
    next.state.set_state(Reduce(reducer, next.votes, next.state.state()));
  }
  return Finish(current, std::move(next), /*votes_changed=*/true, scenario, object_key,
                ChangeCause::CHANGE_CAUSE_EXPIRY, now_ms);
}

}  // namespace tally::processor
