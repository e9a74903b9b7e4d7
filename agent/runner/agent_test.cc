// The agent's required behaviour, end to end inside one process: real checks' scheduling, the
// real spool on disk, real gRPC to FakeRouters (test doubles of tallyd's router) that the test
// stops and starts to make outages. Asserted against a model: the list of every change the
// checks produced, in order — which is exactly what must reach the routers.

#include "agent/runner/agent.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/config/config.h"
#include "agent/reporter/router_sender.h"
#include "agent/spool/spool.h"
#include "agent/testing/fake_router.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace tally::agent {
namespace {

using ::tally::test::WaitFor;
using test::FakeRouter;

constexpr absl::Duration kDeadline = absl::Seconds(20);
const std::vector<std::string> kObjects = {"site-1", "site-2", "site-3"};

// What the checks did: every run of an object's check moves its state one version on, up to a
// cap the test raises; every change is recorded, in order, as "object=state".
class Model {
 public:
  std::string Run(const std::string& object) {
    absl::MutexLock lock(&mu_);
    int& version = version_[object];
    if (version < cap_) ++version;
    std::string state = absl::StrCat("v", version);
    if (last_[object] != state) {
      made_.push_back(absl::StrCat(object, "=", state));
      last_[object] = state;
    }
    return state;
  }
  void SetCap(int cap) {
    absl::MutexLock lock(&mu_);
    cap_ = cap;
  }
  std::vector<std::string> made() const {
    absl::MutexLock lock(&mu_);
    return made_;
  }
  // A restarted agent has no memory of what it reported: its first check is a change.
  void ForgetLastReported() {
    absl::MutexLock lock(&mu_);
    last_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  int cap_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> version_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> last_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> made_ ABSL_GUARDED_BY(mu_);
};

class ModelCheck : public Check {
 public:
  ModelCheck(Model& model, std::string object) : model_(model), object_(std::move(object)) {}
  absl::StatusOr<std::string> Run() override { return model_.Run(object_); }
  std::string Describe() const override { return "model"; }

 private:
  Model& model_;
  const std::string object_;
};

std::vector<std::string> Names(const std::vector<tally::v1::ReportStateRequest>& reports) {
  std::vector<std::string> out;
  for (const auto& r : reports) out.push_back(absl::StrCat(r.object_key(), "=", r.state()));
  return out;
}

// One running tally-agent, assembled as main() does, with the model's checks.
class RunningAgent {
 public:
  RunningAgent(Model& model, const std::string& spool_dir, std::vector<std::string> routers) {
    v1::AgentConfig config;
    config.set_agent_id("edge-1");
    config.set_jitter(0);
    for (const std::string& object : kObjects) {
      v1::Watch* w = config.add_watches();
      w->set_scenario("web");
      w->set_object_key(object);
      w->mutable_check()->mutable_file()->set_path(object);  // the factory reads the object
      *w->mutable_interval() = ToProto(absl::Milliseconds(5));
      *w->mutable_ttl() = ToProto(absl::Hours(1));  // no refreshes: every report is a change
    }
    auto schedule = Schedule::Create(
        config, clock_,
        [&model](const v1::Check& c) -> absl::StatusOr<std::unique_ptr<Check>> {
          return std::make_unique<ModelCheck>(model, c.file().path());
        },
        1);
    EXPECT_TRUE(schedule.ok()) << schedule.status();
    schedule_ = *std::move(schedule);
    SpoolOptions spool_options;
    spool_options.dir = spool_dir;
    auto spool = Spool::Open(spool_options);
    EXPECT_TRUE(spool.ok()) << spool.status();
    spool_ = *std::move(spool);
    const BackoffOptions backoff{absl::Milliseconds(10), absl::Milliseconds(100), 0.2};
    RouterSenderOptions sender_options;
    sender_options.routers = std::move(routers);
    sender_options.rpc_timeout = absl::Seconds(2);
    sender_ = std::make_unique<RouterSender>(sender_options, InsecureStubFactory(backoff));
    OutboxOptions outbox_options;
    outbox_options.max_batch = 4;
    outbox_options.backoff = backoff;
    outbox_options.seed = 3;
    outbox_ = std::make_unique<Outbox>(*spool_, *sender_, clock_, outbox_options);
    agent_ = std::make_unique<Agent>(*schedule_, *outbox_, clock_);
    agent_->Start();
  }
  ~RunningAgent() { agent_->Stop(); }

  Spool& spool() { return *spool_; }
  Outbox& outbox() { return *outbox_; }

 private:
  RealClock clock_;
  std::unique_ptr<Schedule> schedule_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<RouterSender> sender_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Agent> agent_;
};

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Reserve two ports, then leave them unserved: both routers start out down.
    ASSERT_TRUE(router_a_.Start().ok());
    ASSERT_TRUE(router_b_.Start().ok());
    router_a_.Stop();
    router_b_.Stop();
  }
  std::string spool_dir() const { return dir_.path() + "/spool"; }

  ::tally::test::TempDir dir_;
  Model model_;
  FakeRouter router_a_;
  FakeRouter router_b_;
};

TEST_F(AgentTest, RoutersDownAgentKeepsCheckingAndRoutersBackGetEverySpooledReportInOrder) {
  model_.SetCap(20);
  RunningAgent agent(model_, spool_dir(), {router_a_.address(), router_b_.address()});
  // Routers down: the checks go on, and every change lands in the spool.
  ASSERT_TRUE(WaitFor([&] { return model_.made().size() == 60; }, kDeadline));
  ASSERT_TRUE(WaitFor([&] { return agent.spool().Stats().records == 60; }, kDeadline))
      << agent.spool().Stats().records;
  EXPECT_TRUE(agent.outbox().Stats().out);
  EXPECT_GT(agent.outbox().Stats().failed_sends, 1);

  // The second router comes back (the first stays down): everything arrives, in order.
  ASSERT_TRUE(router_b_.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return router_b_.reports().size() >= 60; }, kDeadline))
      << router_b_.reports().size();
  EXPECT_EQ(Names(router_b_.reports()), model_.made());
  ASSERT_TRUE(WaitFor([&] { return !agent.outbox().Stats().out; }, kDeadline));
  EXPECT_TRUE(agent.spool().empty());
  EXPECT_GT(router_b_.batch_calls(), 0u);  // the spool goes out in ReportBatch calls
  EXPECT_EQ(router_b_.stream_calls(), 0u);

  // Routers up: new changes go straight out, behind the spooled ones.
  model_.SetCap(30);
  ASSERT_TRUE(WaitFor([&] { return router_b_.reports().size() >= 90; }, kDeadline));
  EXPECT_EQ(Names(router_b_.reports()), model_.made());
  EXPECT_EQ(agent.outbox().Stats().lost, 0);
}

TEST_F(AgentTest, RouterOlderThanReportBatchGetsEverySpooledReportInOrderAsStreams) {
  router_a_.AnswerReportBatchUnimplemented();
  model_.SetCap(10);
  RunningAgent agent(model_, spool_dir(), {router_a_.address()});
  ASSERT_TRUE(WaitFor([&] { return agent.spool().Stats().records == 30; }, kDeadline))
      << agent.spool().Stats().records;
  ASSERT_TRUE(router_a_.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return router_a_.reports().size() >= 30; }, kDeadline))
      << router_a_.reports().size();
  EXPECT_EQ(Names(router_a_.reports()), model_.made());
  EXPECT_EQ(router_a_.batch_calls(), 1u);  // asked once, then streams only
  EXPECT_GT(router_a_.stream_calls(), 1u);
}

TEST_F(AgentTest, OutageInTheMiddleFailsOverToTheOtherRouterInOrder) {
  ASSERT_TRUE(router_a_.Start().ok());
  model_.SetCap(10);
  RunningAgent agent(model_, spool_dir(), {router_a_.address(), router_b_.address()});
  ASSERT_TRUE(WaitFor([&] { return router_a_.reports().size() >= 30; }, kDeadline));
  router_a_.Stop();
  model_.SetCap(20);
  ASSERT_TRUE(WaitFor([&] { return model_.made().size() == 60; }, kDeadline));
  ASSERT_TRUE(router_b_.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return router_a_.reports().size() + router_b_.reports().size() >= 60; },
                      kDeadline));
  std::vector<std::string> received = Names(router_a_.reports());
  for (const std::string& n : Names(router_b_.reports())) received.push_back(n);
  EXPECT_EQ(received, model_.made());
}

TEST_F(AgentTest, AgentRestartWhileSpoolingLosesNothing) {
  {
    model_.SetCap(10);
    RunningAgent first(model_, spool_dir(), {router_a_.address()});
    ASSERT_TRUE(WaitFor([&] { return first.spool().Stats().records == 30; }, kDeadline))
        << first.spool().Stats().records;
  }  // stopped while every router is down
  EXPECT_EQ(model_.made().size(), 30u);
  model_.ForgetLastReported();
  model_.SetCap(20);
  {
    RunningAgent second(model_, spool_dir(), {router_a_.address()});
    EXPECT_TRUE(second.outbox().Stats().out);  // it found the first run's spool
    ASSERT_TRUE(WaitFor([&] { return second.spool().Stats().records == 60; }, kDeadline))
        << second.spool().Stats().records;
    ASSERT_TRUE(router_a_.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return router_a_.reports().size() >= 60; }, kDeadline))
        << router_a_.reports().size();
  }
  EXPECT_EQ(Names(router_a_.reports()), model_.made());
}

}  // namespace
}  // namespace tally::agent
