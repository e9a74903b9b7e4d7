#include "server/processor/reducer.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace tally::processor {
namespace {

using config::v1::Majority;

struct TestVote {
  std::string agent_id;
  std::string state;
  int64_t observed_at_ms = 0;
};

// One vote per state, from agents agent-00, agent-01, ..., all observed at the same time.
std::vector<TestVote> Votes(std::vector<std::string> states) {
  std::vector<TestVote> votes;
  for (size_t i = 0; i < states.size(); ++i) {
    votes.push_back({absl::StrCat("agent-", i < 10 ? "0" : "", i), std::move(states[i])});
  }
  return votes;
}

std::vector<TestVote> SortedByAgent(std::vector<TestVote> votes) {
  std::sort(votes.begin(), votes.end(),
            [](const TestVote& a, const TestVote& b) { return a.agent_id < b.agent_id; });
  return votes;
}

// LiveVotes viewing `votes`, which must outlive them.
std::vector<LiveVote> View(const std::vector<TestVote>& votes) {
  std::vector<LiveVote> live;
  for (const TestVote& vote : votes)
    live.push_back({vote.agent_id, vote.state, vote.observed_at_ms});
  return live;
}

std::string Describe(const std::vector<TestVote>& votes) {
  std::string out = "[";
  for (const TestVote& vote : votes) {
    absl::StrAppend(&out, " ", vote.agent_id, "=\"", vote.state, "\"@", vote.observed_at_ms);
  }
  return absl::StrCat(out, " ]");
}

config::v1::Reducer ParseConfig(const std::string& text) {
  config::v1::Reducer config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  return config;
}

// The seed of a randomised test: TALLY_TEST_SEED when set (to replay a failure), else fresh. Tests
// report it with SCOPED_TRACE, so every failure message carries it.
uint32_t TestSeed() {
  if (const char* env = std::getenv("TALLY_TEST_SEED")) {
    return static_cast<uint32_t>(std::strtoul(env, nullptr, 10));
  }
  return std::random_device{}();
}

std::string SeedTrace(uint32_t seed) {
  return absl::StrCat("seed=", seed, " (replay with TALLY_TEST_SEED=", seed, ")");
}

// ---------------------------------------------------------------------------------------------
// Table-driven cases: each is checked with the votes sorted by agent (as the processor passes
// them) and in many shuffled orders, which must all give the same state.

struct ReduceCase {
  std::string name;    // the behaviour; a valid gtest name
  std::string config;  // tally.config.v1.Reducer in text format
  std::vector<TestVote> votes;
  std::string previous;
  std::string want;
};

class ReduceTest : public testing::TestWithParam<ReduceCase> {};

TEST_P(ReduceTest, GivesTheStateInEveryVoteOrder) {
  const ReduceCase& c = GetParam();
  absl::StatusOr<std::unique_ptr<Reducer>> reducer = NewReducer(ParseConfig(c.config));
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  std::vector<TestVote> votes = SortedByAgent(c.votes);
  EXPECT_EQ((*reducer)->Reduce(View(votes), c.previous), c.want) << Describe(votes);

  const uint32_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937 rng(seed);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(votes.begin(), votes.end(), rng);
    ASSERT_EQ((*reducer)->Reduce(View(votes), c.previous), c.want) << Describe(votes);
  }
}

std::string CaseName(const testing::TestParamInfo<ReduceCase>& info) { return info.param.name; }

constexpr char kMajority[] = "majority {}";
constexpr char kMajorityDefault[] =
    R"(majority { tie_policy: TIE_POLICY_DEFAULT default_state: "unknown" })";

INSTANTIATE_TEST_SUITE_P(
    Majority, ReduceTest,
    testing::ValuesIn(std::vector<ReduceCase>{
        {"StrictMajorityWins", kMajority, Votes({"a", "a", "b"}), "", "a"},
        {"StrictMajorityBeatsPrevious", kMajority, Votes({"a", "b", "a"}), "b", "a"},
        {"SingleVoteWins", kMajority, Votes({"a"}), "b", "a"},
        {"UnanimityWins", kMajority, Votes({"a", "a", "a", "a"}), "", "a"},
        {"MajorityAmongManyValuesWins", kMajority, Votes({"a", "b", "a", "c", "a"}), "", "a"},
        {"ExactlyHalfIsNoWinnerAndKeepsPrevious", kMajority, Votes({"a", "a", "b", "b"}), "c", "c"},
        {"ExactlyHalfKeepsEmptyPrevious", kMajority, Votes({"a", "b"}), "", ""},
        {"PluralityWithoutMajorityKeepsPrevious", kMajority, Votes({"a", "a", "b", "c"}), "x", "x"},
        {"SplitWithNoMajorityKeepsPrevious", kMajority, Votes({"a", "b", "c", "a", "b"}), "c", "c"},
        {"NoWinnerWithDefaultPolicyGivesDefaultState", kMajorityDefault, Votes({"a", "b"}), "a",
         "unknown"},
        {"NoWinnerWithDefaultPolicyAndEmptyDefaultGivesNoState",
         "majority { tie_policy: TIE_POLICY_DEFAULT }", Votes({"a", "b"}), "a", ""},
        {"WinnerIgnoresDefaultState", kMajorityDefault, Votes({"a", "a", "b"}), "b", "a"},
        {"BelowMinVotesKeepsPrevious", "majority { min_votes: 3 }", Votes({"a", "a"}), "b", "b"},
        {"BelowMinVotesWithDefaultPolicyGivesDefaultState",
         R"(majority { min_votes: 3 tie_policy: TIE_POLICY_DEFAULT default_state: "d" })",
         Votes({"a", "a"}), "b", "d"},
        {"AtMinVotesAWinnerWins", "majority { min_votes: 3 }", Votes({"a", "a", "b"}), "b", "a"},
        {"ZeroVotesGiveNoStateDespiteKeepPrevious", kMajority, {}, "a", ""},
        {"ZeroVotesGiveNoStateDespiteDefaultState", kMajorityDefault, {}, "a", ""},
        {"ZeroVotesGiveNoStateDespiteMinVotes", "majority { min_votes: 2 }", {}, "a", ""},
        {"EmptyStateVotesCanWinAndClearTheState", kMajority, Votes({"", "", "a"}), "a", ""},
        {"EmptyStateVotesCountTowardsTheTotal", kMajority, Votes({"a", "a", "", ""}), "p", "p"},
    }),
    CaseName);

constexpr char kPlurality[] = "plurality {}";

// Twelve distinct states, more than the reducer counts without an index.
std::vector<TestVote> TwelveDistinctStates(std::vector<std::string> extra = {}) {
  std::vector<std::string> states;
  for (int i = 12; i >= 1; --i) states.push_back(absl::StrCat("s", i < 10 ? "0" : "", i));
  for (std::string& state : extra) states.push_back(std::move(state));
  return Votes(std::move(states));
}

INSTANTIATE_TEST_SUITE_P(
    Plurality, ReduceTest,
    testing::ValuesIn(std::vector<ReduceCase>{
        {"MostVotesWins", kPlurality, Votes({"a", "a", "b", "c"}), "", "a"},
        {"MostVotesWinsWithoutMajority", kPlurality, Votes({"b", "a", "c", "a", "d"}), "c", "a"},
        {"PreviousWithFewerVotesLoses", kPlurality, Votes({"a", "a", "b"}), "b", "a"},
        {"TieKeepsPreviousWhenItIsTied", kPlurality, Votes({"a", "b", "b", "a"}), "b", "b"},
        {"TieGivesSmallestWhenPreviousIsNotTied", kPlurality, Votes({"c", "b", "c", "b", "a"}), "a",
         "b"},
        {"TieGivesSmallestWhenThereIsNoPrevious", kPlurality, Votes({"c", "b"}), "", "b"},
        {"TieComparesBytewiseUppercaseFirst", kPlurality, Votes({"a", "B"}), "", "B"},
        {"TieComparesBytewisePrefixFirst", kPlurality, Votes({"aa", "a", "b"}), "", "a"},
        {"SingleVoteWins", kPlurality, Votes({"a"}), "b", "a"},
        {"BelowMinVotesKeepsPrevious", "plurality { min_votes: 3 }", Votes({"a", "a"}), "b", "b"},
        {"BelowMinVotesKeepsEmptyPrevious", "plurality { min_votes: 3 }", Votes({"a", "a"}), "",
         ""},
        {"AtMinVotesMostVotesWins", "plurality { min_votes: 3 }", Votes({"a", "a", "b"}), "b", "a"},
        {"ZeroVotesGiveNoState", kPlurality, {}, "a", ""},
        {"ZeroVotesGiveNoStateDespiteMinVotes", "plurality { min_votes: 2 }", {}, "a", ""},
        {"EmptyStateCanWinAndClearTheState", kPlurality, Votes({"", "", "a"}), "a", ""},
        {"ManyDistinctStatesMostVotesWins", kPlurality, TwelveDistinctStates({"s07"}), "s01",
         "s07"},
        {"ManyDistinctStatesTieGivesSmallest", kPlurality, TwelveDistinctStates(), "", "s01"},
        {"ManyDistinctStatesTieKeepsPrevious", kPlurality, TwelveDistinctStates(), "s11", "s11"},
    }),
    CaseName);

constexpr char kAny[] = R"(any { value: "attack" otherwise: "calm" })";

INSTANTIATE_TEST_SUITE_P(
    Any, ReduceTest,
    testing::ValuesIn(std::vector<ReduceCase>{
        {"OneVoteForValueWins", kAny, Votes({"calm", "calm", "attack", "calm"}), "calm", "attack"},
        {"NoVoteForValueGivesOtherwise", kAny, Votes({"calm", "other"}), "", "calm"},
        {"NoVoteForValueIgnoresPrevious", kAny, Votes({"other"}), "attack", "calm"},
        {"EmptyOtherwiseGivesNoState", R"(any { value: "attack" })", Votes({"calm"}), "attack", ""},
        {"ValueMatchesExactly", kAny, Votes({"Attack", "attack ", "attac"}), "", "calm"},
        {"ZeroVotesGiveNoStateDespiteOtherwise", kAny, {}, "attack", ""},
    }),
    CaseName);

constexpr char kAll[] = R"(all { value: "up" otherwise: "degraded" })";

INSTANTIATE_TEST_SUITE_P(
    All, ReduceTest,
    testing::ValuesIn(std::vector<ReduceCase>{
        {"EveryVoteForValueWins", kAll, Votes({"up", "up", "up"}), "degraded", "up"},
        {"SingleVoteForValueWins", kAll, Votes({"up"}), "", "up"},
        {"OneDissentGivesOtherwise", kAll, Votes({"up", "down", "up"}), "up", "degraded"},
        {"EmptyStateVoteIsADissent", kAll, Votes({"up", ""}), "", "degraded"},
        {"EmptyOtherwiseGivesNoState", R"(all { value: "up" })", Votes({"down"}), "up", ""},
        {"ZeroVotesGiveNoStateDespiteOtherwise", kAll, {}, "up", ""},
    }),
    CaseName);

constexpr char kLatest[] = "latest {}";

INSTANTIATE_TEST_SUITE_P(
    Latest, ReduceTest,
    testing::ValuesIn(std::vector<ReduceCase>{
        {"GreatestObservedAtWins",
         kLatest,
         {{"a", "x", 10}, {"b", "y", 30}, {"c", "z", 20}},
         "",
         "y"},
        {"TieOnObservedAtGivesTheGreaterAgentId",
         kLatest,
         {{"a", "x", 30}, {"b", "y", 30}, {"c", "z", 10}},
         "",
         "y"},
        {"TieComparesAgentIdsBytewise",
         kLatest,
         {{"agent-10", "x", 5}, {"agent-9", "y", 5}},
         "",
         "y"},
        {"NegativeTimesCompareAsNumbers", kLatest, {{"a", "x", -5}, {"b", "y", -10}}, "", "x"},
        {"EmptyStateCanWinAndClearTheState", kLatest, {{"a", "", 20}, {"b", "x", 10}}, "x", ""},
        {"IgnoresPrevious", kLatest, {{"a", "x", 1}}, "y", "x"},
        {"ZeroVotesGiveNoState", kLatest, {}, "a", ""},
    }),
    CaseName);

constexpr char kThreshold[] = R"(threshold { value: "attack" n: 2 otherwise: "calm" })";

INSTANTIATE_TEST_SUITE_P(
    Threshold, ReduceTest,
    testing::ValuesIn(std::vector<ReduceCase>{
        {"ReachedByAMinorityWins", kThreshold, Votes({"calm", "attack", "calm", "attack", "calm"}),
         "", "attack"},
        {"ExceededWins", kThreshold, Votes({"attack", "attack", "attack"}), "", "attack"},
        {"NotReachedGivesOtherwise", kThreshold, Votes({"attack", "calm"}), "attack", "calm"},
        {"NOfOneWinsOnOneVote", R"(threshold { value: "attack" n: 1 otherwise: "calm" })",
         Votes({"calm", "attack"}), "", "attack"},
        {"NAboveTheVoteCountGivesOtherwise",
         R"(threshold { value: "attack" n: 5 otherwise: "calm" })",
         Votes({"attack", "attack", "attack"}), "", "calm"},
        {"EmptyOtherwiseGivesNoState", R"(threshold { value: "attack" n: 2 })", Votes({"attack"}),
         "attack", ""},
        {"ZeroVotesGiveNoStateDespiteOtherwise", kThreshold, {}, "attack", ""},
    }),
    CaseName);

// ---------------------------------------------------------------------------------------------
// Config validation.

struct InvalidConfigCase {
  std::string name;
  std::string config;
  std::string message;
};

class NewReducerRejectsTest : public testing::TestWithParam<InvalidConfigCase> {};

TEST_P(NewReducerRejectsTest, WithInvalidArgumentNamingTheField) {
  absl::StatusOr<std::unique_ptr<Reducer>> reducer = NewReducer(ParseConfig(GetParam().config));
  EXPECT_EQ(reducer.status(), absl::InvalidArgumentError(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Config, NewReducerRejectsTest,
    testing::ValuesIn(std::vector<InvalidConfigCase>{
        {"NoKind", "", "reducer: no reducer kind set"},
        {"NegativeMajorityMinVotes", "majority { min_votes: -1 }",
         "reducer.majority.min_votes: must be >= 0, got -1"},
        {"NegativePluralityMinVotes", "plurality { min_votes: -3 }",
         "reducer.plurality.min_votes: must be >= 0, got -3"},
        {"EmptyAnyValue", R"(any { otherwise: "calm" })", "reducer.any.value: must not be empty"},
        {"EmptyAllValue", R"(all { otherwise: "degraded" })",
         "reducer.all.value: must not be empty"},
        {"EmptyThresholdValue", "threshold { n: 2 }", "reducer.threshold.value: must not be empty"},
        {"ThresholdNZero", R"(threshold { value: "attack" })",
         "reducer.threshold.n: must be >= 1, got 0"},
        {"ThresholdNNegative", R"(threshold { value: "attack" n: -2 })",
         "reducer.threshold.n: must be >= 1, got -2"},
        {"ThresholdValueBeforeN", "threshold { n: 0 }",
         "reducer.threshold.value: must not be empty"},
    }),
    [](const testing::TestParamInfo<InvalidConfigCase>& info) { return info.param.name; });

TEST(NewReducerTest, RejectsAnUnknownTiePolicy) {
  config::v1::Reducer config;
  config.mutable_majority()->set_tie_policy(static_cast<Majority::TiePolicy>(7));
  EXPECT_EQ(NewReducer(config).status(),
            absl::InvalidArgumentError("reducer.majority.tie_policy: unknown value 7"));
}

TEST(NewReducerTest, NamesEachKindAfterItsConfigField) {
  const std::vector<std::pair<std::string, std::string>> configs = {
      {"majority {}", "majority"},      {"plurality {}", "plurality"},
      {R"(any { value: "a" })", "any"}, {R"(all { value: "a" })", "all"},
      {"latest {}", "latest"},          {R"(threshold { value: "a" n: 1 })", "threshold"},
  };
  for (const auto& [text, name] : configs) {
    absl::StatusOr<std::unique_ptr<Reducer>> reducer = NewReducer(ParseConfig(text));
    ASSERT_TRUE(reducer.ok()) << text << ": " << reducer.status();
    EXPECT_EQ((*reducer)->name(), name);
  }
}

// ---------------------------------------------------------------------------------------------
// Randomised properties: each reducer against a model that restates config.proto's comments as
// plainly as possible (ordered std::map counts, no cleverness), on random votes in random order.

constexpr int kPropertyIterations = 3000;

// The states random votes draw from: the empty state, prefixes, case and many distinct values.
std::vector<std::string> StatePool() {
  return {"", "a", "b", "c", "aa", "ab", "B", "b0", "s1", "s2", "s3", "attack", "calm", "up"};
}

struct RandomObject {
  std::vector<TestVote> votes;  // sorted by agent, unique agents
  std::string previous;
};

template <typename T>
T Pick(std::mt19937& rng, const std::vector<T>& from) {
  return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
}

int Uniform(std::mt19937& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

RandomObject NewRandomObject(std::mt19937& rng) {
  // Few distinct states make ties and majorities likely; many exercise the indexed counting.
  std::vector<std::string> states = StatePool();
  std::shuffle(states.begin(), states.end(), rng);
  states.resize(Uniform(rng, 1, static_cast<int>(states.size())));
  std::vector<int> agents(40);
  for (int i = 0; i < 40; ++i) agents[i] = i;
  std::shuffle(agents.begin(), agents.end(), rng);
  RandomObject object;
  for (int i = Uniform(rng, 0, 24); i > 0; --i) {
    object.votes.push_back(
        {absl::StrCat("agent-", agents[i]), Pick(rng, states), Uniform(rng, -2, 4)});
  }
  object.votes = SortedByAgent(std::move(object.votes));
  std::vector<std::string> previous = StatePool();
  previous.push_back("never-voted");
  object.previous = Pick(rng, previous);
  return object;
}

std::map<std::string, int> CountByState(const std::vector<TestVote>& votes) {
  std::map<std::string, int> counts;
  for (const TestVote& vote : votes) ++counts[vote.state];
  return counts;
}

using RandomConfig = std::function<config::v1::Reducer(std::mt19937&)>;
using Model = std::function<std::string(const config::v1::Reducer&, const std::vector<TestVote>&,
                                        const std::string& previous)>;

void ExpectReducerMatchesModel(const RandomConfig& random_config, const Model& model) {
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  testing::Test::RecordProperty("seed", static_cast<int>(seed & 0x7fffffff));
  std::mt19937 rng(seed);
  for (int i = 0; i < kPropertyIterations; ++i) {
    const config::v1::Reducer config = random_config(rng);
    absl::StatusOr<std::unique_ptr<Reducer>> reducer = NewReducer(config);
    ASSERT_TRUE(reducer.ok()) << config.ShortDebugString() << ": " << reducer.status();
    RandomObject object = NewRandomObject(rng);
    const std::string want = model(config, object.votes, object.previous);
    const std::string context = absl::StrCat("iteration ", i, ": ", config.ShortDebugString(),
                                             " previous=\"", object.previous, "\" votes=");
    ASSERT_EQ((*reducer)->Reduce(View(object.votes), object.previous), want)
        << context << Describe(object.votes);
    std::shuffle(object.votes.begin(), object.votes.end(), rng);
    ASSERT_EQ((*reducer)->Reduce(View(object.votes), object.previous), want)
        << context << Describe(object.votes);
  }
}

std::string NonEmptyState(std::mt19937& rng) {
  std::string state;
  while (state.empty()) state = Pick(rng, StatePool());
  return state;
}

TEST(ReducerPropertyTest, MajorityMatchesModel) {
  ExpectReducerMatchesModel(
      [](std::mt19937& rng) {
        config::v1::Reducer config;
        Majority* majority = config.mutable_majority();
        majority->set_min_votes(Uniform(rng, 0, 6));
        majority->set_tie_policy(Uniform(rng, 0, 1) == 0 ? Majority::TIE_POLICY_KEEP_PREVIOUS
                                                         : Majority::TIE_POLICY_DEFAULT);
        majority->set_default_state(Pick(rng, std::vector<std::string>{"", "a", "unknown"}));
        return config;
      },
      [](const config::v1::Reducer& config, const std::vector<TestVote>& votes,
         const std::string& previous) -> std::string {
        if (votes.empty()) return "";
        const Majority& m = config.majority();
        const std::string no_winner =
            m.tie_policy() == Majority::TIE_POLICY_DEFAULT ? m.default_state() : previous;
        if (static_cast<int>(votes.size()) < m.min_votes()) return no_winner;
        for (const auto& [state, count] : CountByState(votes)) {
          if (count * 2 > static_cast<int>(votes.size())) return state;
        }
        return no_winner;
      });
}

TEST(ReducerPropertyTest, PluralityMatchesModel) {
  ExpectReducerMatchesModel(
      [](std::mt19937& rng) {
        config::v1::Reducer config;
        config.mutable_plurality()->set_min_votes(Uniform(rng, 0, 6));
        return config;
      },
      [](const config::v1::Reducer& config, const std::vector<TestVote>& votes,
         const std::string& previous) -> std::string {
        if (votes.empty()) return "";
        if (static_cast<int>(votes.size()) < config.plurality().min_votes()) return previous;
        const std::map<std::string, int> counts = CountByState(votes);
        int most = 0;
        for (const auto& [state, count] : counts) most = std::max(most, count);
        std::vector<std::string> tied;  // ascending, as the map is ordered
        for (const auto& [state, count] : counts) {
          if (count == most) tied.push_back(state);
        }
        if (std::find(tied.begin(), tied.end(), previous) != tied.end()) return previous;
        return tied.front();
      });
}

TEST(ReducerPropertyTest, AnyMatchesModel) {
  ExpectReducerMatchesModel(
      [](std::mt19937& rng) {
        config::v1::Reducer config;
        config.mutable_any()->set_value(NonEmptyState(rng));
        config.mutable_any()->set_otherwise(Pick(rng, StatePool()));
        return config;
      },
      [](const config::v1::Reducer& config, const std::vector<TestVote>& votes,
         const std::string&) -> std::string {
        if (votes.empty()) return "";
        return CountByState(votes).contains(config.any().value()) ? config.any().value()
                                                                  : config.any().otherwise();
      });
}

TEST(ReducerPropertyTest, AllMatchesModel) {
  ExpectReducerMatchesModel(
      [](std::mt19937& rng) {
        config::v1::Reducer config;
        config.mutable_all()->set_value(NonEmptyState(rng));
        config.mutable_all()->set_otherwise(Pick(rng, StatePool()));
        return config;
      },
      [](const config::v1::Reducer& config, const std::vector<TestVote>& votes,
         const std::string&) -> std::string {
        if (votes.empty()) return "";
        const std::map<std::string, int> counts = CountByState(votes);
        return counts.size() == 1 && counts.begin()->first == config.all().value()
                   ? config.all().value()
                   : config.all().otherwise();
      });
}

TEST(ReducerPropertyTest, LatestMatchesModel) {
  ExpectReducerMatchesModel(
      [](std::mt19937&) {
        config::v1::Reducer config;
        config.mutable_latest();
        return config;
      },
      [](const config::v1::Reducer&, const std::vector<TestVote>& votes,
         const std::string&) -> std::string {
        if (votes.empty()) return "";
        std::vector<TestVote> by_time = votes;
        std::sort(by_time.begin(), by_time.end(), [](const TestVote& a, const TestVote& b) {
          return std::tie(a.observed_at_ms, a.agent_id) < std::tie(b.observed_at_ms, b.agent_id);
        });
        return by_time.back().state;
      });
}

TEST(ReducerPropertyTest, ThresholdMatchesModel) {
  ExpectReducerMatchesModel(
      [](std::mt19937& rng) {
        config::v1::Reducer config;
        config.mutable_threshold()->set_value(NonEmptyState(rng));
        config.mutable_threshold()->set_n(Uniform(rng, 1, 6));
        config.mutable_threshold()->set_otherwise(Pick(rng, StatePool()));
        return config;
      },
      [](const config::v1::Reducer& config, const std::vector<TestVote>& votes,
         const std::string&) -> std::string {
        if (votes.empty()) return "";
        const std::map<std::string, int> counts = CountByState(votes);
        auto it = counts.find(config.threshold().value());
        const int votes_for_value = it == counts.end() ? 0 : it->second;
        return votes_for_value >= config.threshold().n() ? config.threshold().value()
                                                         : config.threshold().otherwise();
      });
}

}  // namespace
}  // namespace tally::processor
