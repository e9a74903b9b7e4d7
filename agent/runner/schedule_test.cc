#include "agent/runner/schedule.h"

#include <memory>

#include "agent/config/config.h"
#include "gtest/gtest.h"

namespace tally::agent {
namespace {

// A check whose result the test sets.
struct Script {
  absl::StatusOr<std::string> result = std::string("up");
  int runs = 0;
};

class ScriptedCheck : public Check {
 public:
  explicit ScriptedCheck(std::shared_ptr<Script> script) : script_(std::move(script)) {}
  absl::StatusOr<std::string> Run() override {
    ++script_->runs;
    return script_->result;
  }
  std::string Describe() const override { return "scripted"; }

 private:
  std::shared_ptr<Script> script_;
};

class ScheduleTest : public ::testing::Test {
 protected:
  std::unique_ptr<Schedule> Make(double jitter = 0.0, const std::string& error_state = "",
                                 absl::Duration ttl = absl::Seconds(60)) {
    v1::AgentConfig config;
    config.set_agent_id("edge-1");
    config.set_jitter(jitter);
    v1::Watch* w = config.add_watches();
    w->set_scenario("web");
    w->set_object_key("site-1");
    w->set_error_state(error_state);
    (*w->mutable_attributes())["region"] = "eu";
    *w->mutable_interval() = ToProto(absl::Seconds(10));
    *w->mutable_ttl() = ToProto(ttl);
    w->mutable_check()->mutable_file()->set_path("unused");
    auto schedule = Schedule::Create(
        config, clock_,
        [this](const v1::Check&) -> absl::StatusOr<std::unique_ptr<Check>> {
          return std::make_unique<ScriptedCheck>(script_);
        },
        7);
    EXPECT_TRUE(schedule.ok()) << schedule.status();
    return std::move(*schedule);
  }

  ManualClock clock_;
  std::shared_ptr<Script> script_ = std::make_shared<Script>();
};

TEST_F(ScheduleTest, FirstCheckRunsAtOnceAndIsReported) {
  auto schedule = Make();
  EXPECT_EQ(schedule->NextDue(), clock_.Now());
  auto reports = schedule->RunDue();
  ASSERT_EQ(reports.size(), 1u);
  const tally::v1::ReportStateRequest& r = reports[0];
  EXPECT_EQ(r.scenario(), "web");
  EXPECT_EQ(r.object_key(), "site-1");
  EXPECT_EQ(r.agent_id(), "edge-1");
  EXPECT_EQ(r.state(), "up");
  EXPECT_EQ(r.attributes().at("region"), "eu");
  EXPECT_EQ(r.ttl().seconds(), 60);
  EXPECT_EQ(r.observed_at().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(schedule->NextDue(), clock_.Now() + absl::Seconds(10));
}

TEST_F(ScheduleTest, NothingRunsBeforeItIsDue) {
  auto schedule = Make();
  schedule->RunDue();
  clock_.Advance(absl::Seconds(9));
  EXPECT_TRUE(schedule->RunDue().empty());
  EXPECT_EQ(script_->runs, 1);
}

TEST_F(ScheduleTest, UnchangedStateIsRefreshedAtHalfTheTtlOnly) {
  auto schedule = Make();
  schedule->RunDue();
  int reported = 0;
  // Checks every 10 s; ttl 60 s: the unchanged state goes out again at 30 s, 60 s, ...
  for (int t = 10; t <= 60; t += 10) {
    clock_.Advance(absl::Seconds(10));
    size_t n = schedule->RunDue().size();
    EXPECT_EQ(n, (t % 30 == 0) ? 1u : 0u) << "at " << t << " s";
    reported += static_cast<int>(n);
  }
  EXPECT_EQ(reported, 2);
  EXPECT_EQ(script_->runs, 7);
}

TEST_F(ScheduleTest, RefreshRunsTheCheckEvenWhenTheIntervalIsLonger) {
  v1::AgentConfig config;
  config.set_agent_id("a");
  v1::Watch* w = config.add_watches();
  w->set_scenario("web");
  w->set_object_key("o");
  *w->mutable_interval() = ToProto(absl::Seconds(10));
  *w->mutable_ttl() = ToProto(absl::Seconds(8));
  auto short_ttl = Schedule::Create(
      config, clock_,
      [this](const v1::Check&) -> absl::StatusOr<std::unique_ptr<Check>> {
        return std::make_unique<ScriptedCheck>(script_);
      },
      1);
  ASSERT_TRUE(short_ttl.ok());
  (*short_ttl)->RunDue();
  EXPECT_EQ((*short_ttl)->NextDue(), clock_.Now() + absl::Seconds(4));
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ((*short_ttl)->RunDue().size(), 1u);
}

TEST_F(ScheduleTest, ChangeIsReportedAtTheNextCheck) {
  auto schedule = Make();
  schedule->RunDue();
  script_->result = std::string("under-attack");
  clock_.Advance(absl::Seconds(10));
  auto reports = schedule->RunDue();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].state(), "under-attack");
}

TEST_F(ScheduleTest, JitteredIntervalStaysInItsBand) {
  auto schedule = Make(/*jitter=*/0.2, "", absl::Hours(1));  // no refresh inside the loop
  for (int i = 0; i < 50; ++i) {
    schedule->RunDue();
    const absl::Duration wait = schedule->NextDue() - clock_.Now();
    EXPECT_GE(wait, absl::Seconds(8));
    EXPECT_LE(wait, absl::Seconds(12));
    clock_.Advance(wait);
  }
}

TEST_F(ScheduleTest, FailedCheckReportsErrorState) {
  auto schedule = Make(0.0, "unknown");
  script_->result = absl::UnavailableError("down");
  auto reports = schedule->RunDue();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].state(), "unknown");
}

TEST_F(ScheduleTest, StateTheRouterWouldRefuseReportsErrorState) {
  auto schedule = Make(0.0, "unknown");
  for (const std::string& bad : {std::string(257, 'x'), std::string("up\0x", 4)}) {
    script_->result = bad;
    auto reports = schedule->RunDue();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].state(), "unknown");
    clock_.Advance(absl::Seconds(30));
  }
}

TEST_F(ScheduleTest, FailedCheckWithoutErrorStateReportsNothingThenReportsAgain) {
  auto schedule = Make();
  ASSERT_EQ(schedule->RunDue().size(), 1u);
  script_->result = absl::UnavailableError("down");
  clock_.Advance(absl::Seconds(10));
  EXPECT_TRUE(schedule->RunDue().empty());
  script_->result = std::string("up");  // same as the last report, but the vote may have lapsed
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(schedule->RunDue().size(), 1u);
}

TEST_F(ScheduleTest, RunAllOnceReportsOrExplains) {
  auto schedule = Make();
  auto once = schedule->RunAllOnce();
  ASSERT_EQ(once.size(), 1u);
  ASSERT_TRUE(once[0].ok());
  EXPECT_EQ(once[0]->state(), "up");
  script_->result = absl::NotFoundError("exit code 3 maps to no state");
  once = schedule->RunAllOnce();
  ASSERT_FALSE(once[0].ok());
  EXPECT_NE(once[0].status().message().find("web/site-1"), absl::string_view::npos);
}

}  // namespace
}  // namespace tally::agent
