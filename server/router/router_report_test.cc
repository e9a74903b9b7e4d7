// Router::ReportBatch against a sink that records the writes and answers them the way the Kafka
// sink does: later, from a thread of its own (or at once, when it refuses a record).

#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kafka/partitioner.h"
#include "server/router/fake_routes.h"
#include "server/router/router.h"
#include "server/router/tokens.h"

namespace tally::router {
namespace {

using ::testing::HasSubstr;

class RecordingSink final : public ReportSink {
 public:
  struct Write {
    std::string topic;
    int32_t partition;
    std::string key;
    records::v1::ReportRecord record;
  };

  ~RecordingSink() override { Answer(); }

  void Send(const std::string& topic, int32_t partition, const std::string& key,
            const std::string& value, Done done) override {
    absl::MutexLock lock(&mu_);
    Write write{topic, partition, key, {}};
    EXPECT_TRUE(write.record.ParseFromString(value));
    if (refuse_key_ == key) {
      done(absl::UnavailableError("cannot queue the report for Kafka: Local: Queue full"));
      return;
    }
    writes_.push_back(std::move(write));
    pending_.push_back(std::move(done));
  }

  // Confirms the pending writes from another thread, each with the next offset of its partition;
  // the write of `fail_key` fails instead.
  void Answer(const std::string& fail_key = "") {
    std::vector<Done> pending;
    std::vector<Write> writes;
    {
      absl::MutexLock lock(&mu_);
      pending.swap(pending_);
      writes.assign(writes_.end() - pending.size(), writes_.end());
    }
    std::thread([&] {
      for (size_t i = 0; i < pending.size(); ++i) {
        if (writes[i].key == fail_key) {
          pending[i](absl::UnavailableError("Kafka did not confirm the write: Broker: timed out"));
        } else {
          pending[i](next_offset_[writes[i].partition]++);
        }
      }
    }).join();
  }

  void RefuseKey(const std::string& key) {
    absl::MutexLock lock(&mu_);
    refuse_key_ = key;
  }
  std::vector<Write> writes() {
    absl::MutexLock lock(&mu_);
    return writes_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Write> writes_ ABSL_GUARDED_BY(mu_);
  std::vector<Done> pending_ ABSL_GUARDED_BY(mu_);
  std::string refuse_key_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, int64_t> next_offset_;  // the answering thread's
};

// The outcome of one batch, delivered once from whichever thread.
struct BatchAnswer {
  absl::Notification done;
  absl::StatusOr<std::vector<std::string>> result;
  Router::BatchDone Callback() {
    return [this](absl::StatusOr<std::vector<std::string>> r) {
      EXPECT_FALSE(done.HasBeenNotified()) << "answered twice";
      result = std::move(r);
      done.Notify();
    };
  }
};

class RouterReportTest : public ::testing::Test {
 protected:
  RouterReportTest() {
    config_.set_app_id("tally");
    for (const char* name : {"demo", "other"}) {
      config::v1::Scenario* scenario = config_.add_scenarios();
      scenario->set_name(name);
      scenario->set_partitions(4);
      scenario->mutable_default_ttl()->set_seconds(60);  // what config loading fills in
    }
    router_ = std::make_unique<Router>(config_, sink_, routes_);
  }

  static v1::ReportStateRequest Report(const std::string& key, const std::string& state,
                                       const std::string& scenario = "demo") {
    v1::ReportStateRequest report;
    report.set_scenario(scenario);
    report.set_object_key(key);
    report.set_agent_id("agent-1");
    report.set_state(state);
    return report;
  }

  static v1::ReportBatchRequest Batch(int size) {
    v1::ReportBatchRequest batch;
    for (int i = 0; i < size; ++i) {
      *batch.add_reports() = Report(absl::StrCat("site-", i), i % 2 ? "attack" : "calm");
    }
    return batch;
  }

  config::v1::Config config_;
  RecordingSink sink_;
  FakeRoutes routes_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterReportTest, BatchWritesEveryReportToItsPartitionAndAnswersTheTokensInOrder) {
  v1::ReportBatchRequest batch = Batch(20);
  *batch.mutable_reports(7) = Report("site-7", "calm", "other");
  BatchAnswer answer;
  router_->ReportBatch(batch, answer.Callback());
  EXPECT_FALSE(answer.done.HasBeenNotified()) << "answered before Kafka confirmed the writes";
  sink_.Answer();
  ASSERT_TRUE(answer.done.HasBeenNotified());
  ASSERT_TRUE(answer.result.ok()) << answer.result.status();
  ASSERT_EQ(answer.result->size(), 20u);

  std::vector<RecordingSink::Write> writes = sink_.writes();
  ASSERT_EQ(writes.size(), 20u);
  std::map<int32_t, int64_t> offsets;  // what the sink gave each partition, in order
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    const RecordingSink::Write& w = writes[i];
    const v1::ReportStateRequest& report = batch.reports(i);
    EXPECT_EQ(w.topic, absl::StrCat("tally.", report.scenario(), ".reports"));
    EXPECT_EQ(w.key, report.object_key());
    EXPECT_EQ(w.partition, kafka::PartitionFor(report.object_key(), 4));
    EXPECT_EQ(w.record.object_key(), report.object_key());
    EXPECT_EQ(w.record.state(), report.state());
    EXPECT_EQ(w.record.agent_id(), report.agent_id());
    auto token = ParseWriteToken((*answer.result)[i], "token");
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(token->partition, w.partition);
    EXPECT_EQ(token->offset, offsets[w.partition]++);
  }
}

TEST_F(RouterReportTest, BadReportRefusesTheBatchNamingItAndWritesNothing) {
  struct Case {
    std::string name;
    std::function<void(v1::ReportBatchRequest&)> mutate;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty", [](auto& b) { b.clear_reports(); }, absl::StatusCode::kInvalidArgument,
       "reports: must not be empty"},
      {"too many", [](auto& b) { b = Batch(kMaxBatchReports + 1); },
       absl::StatusCode::kInvalidArgument, "reports: 1001 reports, the limit is 1000"},
      {"empty state", [](auto& b) { b.mutable_reports(3)->clear_state(); },
       absl::StatusCode::kInvalidArgument, "reports[3].state: must not be empty"},
      {"long key", [](auto& b) { b.mutable_reports(9)->set_object_key(std::string(257, 'k')); },
       absl::StatusCode::kInvalidArgument, "reports[9].object_key: 257 bytes, the limit is 256"},
      {"unknown scenario", [](auto& b) { b.mutable_reports(0)->set_scenario("nope"); },
       absl::StatusCode::kNotFound, "reports[0].scenario: \"nope\" is not served here"},
      {"the last one bad", [](auto& b) { b.mutable_reports(9)->clear_agent_id(); },
       absl::StatusCode::kInvalidArgument, "reports[9].agent_id: must not be empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ReportBatchRequest batch = Batch(10);
    c.mutate(batch);
    BatchAnswer answer;
    router_->ReportBatch(batch, answer.Callback());
    ASSERT_TRUE(answer.done.HasBeenNotified()) << "a refused batch is answered at once";
    EXPECT_EQ(answer.result.status().code(), c.code) << answer.result.status();
    EXPECT_THAT(answer.result.status().message(), HasSubstr(c.message));
  }
  EXPECT_TRUE(sink_.writes().empty()) << "a refused batch wrote nothing";
}

TEST_F(RouterReportTest, FailedWriteFailsTheBatchNamingTheReportAfterEveryWriteEnded) {
  BatchAnswer answer;
  router_->ReportBatch(Batch(6), answer.Callback());
  sink_.Answer(/*fail_key=*/"site-4");
  ASSERT_TRUE(answer.done.HasBeenNotified());
  EXPECT_EQ(answer.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(answer.result.status().message(),
              HasSubstr("reports[4]: Kafka did not confirm the write"));

  // A record the sink refuses at once (its queue is full) answers inline, while the others are
  // still waiting for Kafka: the batch ends only after the last of them.
  sink_.RefuseKey("site-2");
  BatchAnswer refused;
  router_->ReportBatch(Batch(6), refused.Callback());
  EXPECT_FALSE(refused.done.HasBeenNotified()) << "five writes are still waiting";
  sink_.Answer();
  ASSERT_TRUE(refused.done.HasBeenNotified());
  EXPECT_EQ(refused.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.result.status().message(), HasSubstr("reports[2]: cannot queue"));
}

}  // namespace
}  // namespace tally::router
