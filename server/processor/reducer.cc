#include "server/processor/reducer.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tally::processor {
namespace {

using config::v1::Majority;

// Reducers run for every processed report, so counting avoids allocation: a linear scan over the
// distinct states seen so far is cheaper than hashing while there are only a few (the usual case:
// a handful of values among up to ~100 agents). Past kInlineStates an index takes over, so an
// object with many distinct states stays linear in the number of votes.
class StateTally {
 public:
  struct Entry {
    std::string_view state;
    size_t votes;
  };

  explicit StateTally(absl::Span<const LiveVote> votes) {
    for (const LiveVote& vote : votes) Add(vote.state);
  }

  // One entry per distinct state, in an unspecified order.
  absl::Span<const Entry> entries() const { return entries_; }

 private:
  static constexpr size_t kInlineStates = 8;

  void Add(std::string_view state) {
    if (index_.empty()) {
      for (Entry& entry : entries_) {
        if (entry.state == state) {
          ++entry.votes;
          return;
        }
      }
      entries_.push_back({state, 1});
      if (entries_.size() > kInlineStates) {
        for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].state, i);
      }
      return;
    }
    auto [it, inserted] = index_.try_emplace(state, entries_.size());
    if (inserted) {
      entries_.push_back({state, 1});
    } else {
      ++entries_[it->second].votes;
    }
  }

  absl::InlinedVector<Entry, kInlineStates> entries_;
  // state -> position in entries_; empty until there are more than kInlineStates states.
  absl::flat_hash_map<std::string_view, size_t> index_;
};

size_t CountVotesFor(absl::Span<const LiveVote> votes, std::string_view state) {
  size_t count = 0;
  for (const LiveVote& vote : votes) count += vote.state == state ? 1 : 0;
  return count;
}

class MajorityReducer final : public Reducer {
 public:
  MajorityReducer(size_t min_votes, bool keep_previous, std::string default_state)
      : min_votes_(min_votes),
        keep_previous_(keep_previous),
        default_state_(std::move(default_state)) {}

  std::string Reduce(absl::Span<const LiveVote> votes, std::string_view previous) const override {
    if (votes.empty()) return "";
    if (votes.size() < min_votes_) return NoWinner(previous);
    // Boyer-Moore: if any state has a strict majority it is the surviving candidate, found in one
    // pass without counting every state; a second pass checks that it really has the majority.
    std::string_view candidate;
    size_t lead = 0;
    for (const LiveVote& vote : votes) {
      if (lead == 0) {
        candidate = vote.state;
        lead = 1;
      } else if (vote.state == candidate) {
        ++lead;
      } else {
        --lead;
      }
    }
    if (2 * CountVotesFor(votes, candidate) > votes.size()) return std::string(candidate);
    return NoWinner(previous);
  }

  std::string_view name() const override { return "majority"; }

 private:
  std::string NoWinner(std::string_view previous) const {
    return keep_previous_ ? std::string(previous) : default_state_;
  }

  const size_t min_votes_;
  const bool keep_previous_;
  const std::string default_state_;
};

class PluralityReducer final : public Reducer {
 public:
  explicit PluralityReducer(size_t min_votes) : min_votes_(min_votes) {}

  std::string Reduce(absl::Span<const LiveVote> votes, std::string_view previous) const override {
    if (votes.empty()) return "";
    if (votes.size() < min_votes_) return std::string(previous);
    StateTally tally(votes);
    size_t most = 0;
    for (const StateTally::Entry& entry : tally.entries()) most = std::max(most, entry.votes);
    // Preferring `previous` among tied values keeps a state from flapping between equals; the
    // smallest value otherwise makes the choice independent of the order of the votes.
    const StateTally::Entry* smallest = nullptr;
    for (const StateTally::Entry& entry : tally.entries()) {
      if (entry.votes != most) continue;
      if (entry.state == previous) return std::string(previous);
      if (smallest == nullptr || entry.state < smallest->state) smallest = &entry;
    }
    return std::string(smallest->state);
  }

  std::string_view name() const override { return "plurality"; }

 private:
  const size_t min_votes_;
};

class AnyOfReducer final : public Reducer {
 public:
  AnyOfReducer(std::string value, std::string otherwise)
      : value_(std::move(value)), otherwise_(std::move(otherwise)) {}

  std::string Reduce(absl::Span<const LiveVote> votes,
                     std::string_view /*previous*/) const override {
    if (votes.empty()) return "";
    for (const LiveVote& vote : votes) {
      if (vote.state == value_) return value_;
    }
    return otherwise_;
  }

  std::string_view name() const override { return "any"; }

 private:
  const std::string value_;
  const std::string otherwise_;
};

class AllOfReducer final : public Reducer {
 public:
  AllOfReducer(std::string value, std::string otherwise)
      : value_(std::move(value)), otherwise_(std::move(otherwise)) {}

  std::string Reduce(absl::Span<const LiveVote> votes,
                     std::string_view /*previous*/) const override {
    if (votes.empty()) return "";
    for (const LiveVote& vote : votes) {
      if (vote.state != value_) return otherwise_;
    }
    return value_;
  }

  std::string_view name() const override { return "all"; }

 private:
  const std::string value_;
  const std::string otherwise_;
};

class LatestReducer final : public Reducer {
 public:
  std::string Reduce(absl::Span<const LiveVote> votes,
                     std::string_view /*previous*/) const override {
    const LiveVote* latest = nullptr;
    for (const LiveVote& vote : votes) {
      if (latest == nullptr || vote.observed_at_ms > latest->observed_at_ms ||
          (vote.observed_at_ms == latest->observed_at_ms && vote.agent_id > latest->agent_id)) {
        latest = &vote;
      }
    }
    return latest == nullptr ? "" : std::string(latest->state);
  }

  std::string_view name() const override { return "latest"; }
};

class ThresholdReducer final : public Reducer {
 public:
  ThresholdReducer(std::string value, size_t n, std::string otherwise)
      : value_(std::move(value)), n_(n), otherwise_(std::move(otherwise)) {}

  std::string Reduce(absl::Span<const LiveVote> votes,
                     std::string_view /*previous*/) const override {
    if (votes.empty()) return "";
    return CountVotesFor(votes, value_) >= n_ ? value_ : otherwise_;
  }

  std::string_view name() const override { return "threshold"; }

 private:
  const std::string value_;
  const size_t n_;
  const std::string otherwise_;
};

absl::Status NotNegative(absl::string_view field, int32_t value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": must be >= 0, got ", value));
}

absl::Status NotEmpty(absl::string_view field, std::string_view value) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reducer>> NewReducer(const config::v1::Reducer& config) {
  switch (config.kind_case()) {
    case config::v1::Reducer::kMajority: {
      const Majority& majority = config.majority();
      if (absl::Status s = NotNegative("reducer.majority.min_votes", majority.min_votes());
          !s.ok()) {
        return s;
      }
      // proto3 enums are open: a JSON or binary config can carry a number no policy has.
      if (!Majority::TiePolicy_IsValid(majority.tie_policy())) {
        return absl::InvalidArgumentError(
            absl::StrCat("reducer.majority.tie_policy: unknown value ",
                         static_cast<int>(majority.tie_policy())));
      }
      return std::make_unique<MajorityReducer>(
          static_cast<size_t>(majority.min_votes()),
          majority.tie_policy() == Majority::TIE_POLICY_KEEP_PREVIOUS, majority.default_state());
    }
    case config::v1::Reducer::kPlurality: {
      const config::v1::Plurality& plurality = config.plurality();
      if (absl::Status s = NotNegative("reducer.plurality.min_votes", plurality.min_votes());
          !s.ok()) {
        return s;
      }
      return std::make_unique<PluralityReducer>(static_cast<size_t>(plurality.min_votes()));
    }
    case config::v1::Reducer::kAny: {
      if (absl::Status s = NotEmpty("reducer.any.value", config.any().value()); !s.ok()) return s;
      return std::make_unique<AnyOfReducer>(config.any().value(), config.any().otherwise());
    }
    case config::v1::Reducer::kAll: {
      if (absl::Status s = NotEmpty("reducer.all.value", config.all().value()); !s.ok()) return s;
      return std::make_unique<AllOfReducer>(config.all().value(), config.all().otherwise());
    }
    case config::v1::Reducer::kLatest:
      return std::make_unique<LatestReducer>();
    case config::v1::Reducer::kThreshold: {
      const config::v1::Threshold& threshold = config.threshold();
      if (absl::Status s = NotEmpty("reducer.threshold.value", threshold.value()); !s.ok()) {
        return s;
      }
      if (threshold.n() < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("reducer.threshold.n: must be >= 1, got ", threshold.n()));
      }
      return std::make_unique<ThresholdReducer>(
          threshold.value(), static_cast<size_t>(threshold.n()), threshold.otherwise());
    }
    case config::v1::Reducer::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("reducer: no reducer kind set");
}

}  // namespace tally::processor
