#include "client/tallyctl/output.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace tally::tallyctl {
namespace {

using ::testing::HasSubstr;

v1::ObjectState State(const std::string& key, const std::string& value, int64_t version) {
  v1::ObjectState s;
  s.set_scenario("demo");
  s.set_object_key(key);
  s.set_state(value);
  s.set_version(version);
  s.mutable_updated_at()->set_seconds(1'800'000'000);
  s.mutable_updated_at()->set_nanos(123'000'000);
  return s;
}

TEST(OutputTest, TableColumnsAreAlignedToTheWidestCell) {
  Table table({"KEY", "STATE"});
  table.AddRow({"site-1000", "attack"});
  table.AddRow({"s", "ok"});
  EXPECT_EQ(table.Render(),
            "KEY        STATE\n"
            "site-1000  attack\n"
            "s          ok\n");
}

TEST(OutputTest, TimestampsAreUtcWithMillisecondsAndUnsetIsADash) {
  google::protobuf::Timestamp t;
  EXPECT_EQ(FormatTimestamp(t), "-");
  t.set_seconds(1'800'000'000);
  t.set_nanos(123'456'789);
  EXPECT_EQ(FormatTimestamp(t), "2027-01-15T08:00:00.123Z");
}

TEST(OutputTest, ListTableHasOneRowPerStateWithSortedTally) {
  v1::ObjectState a = State("site-1", "attack", 3);
  (*a.mutable_tally())["ok"] = 1;
  (*a.mutable_tally())["attack"] = 2;
  a.set_pinned(true);
  v1::ObjectState b = State("site-22", "ok", 12);
  EXPECT_EQ(StatesTable({a, b}),
            "KEY      STATE   VERSION  UPDATED                   PINNED  TALLY\n"
            "site-1   attack  3        2027-01-15T08:00:00.123Z  yes     attack=2 ok=1\n"
            "site-22  ok      12       2027-01-15T08:00:00.123Z  no      -\n");
}

TEST(OutputTest, GetTableShowsFieldsThenVotes) {
  v1::GetStateResponse response;
  *response.mutable_state() = State("site-1", "attack", 3);
  (*response.mutable_state()->mutable_tally())["attack"] = 1;
  v1::Vote* vote = response.mutable_state()->add_votes();
  vote->set_agent_id("agent-7");
  vote->set_state("attack");
  vote->mutable_observed_at()->set_seconds(1'800'000'000);
  response.set_served_by("n2");
  response.set_lag(0);
  EXPECT_EQ(GetTable(response),
            "scenario:   demo\n"
            "key:        site-1\n"
            "state:      attack\n"
            "version:    3\n"
            "updated:    2027-01-15T08:00:00.123Z\n"
            "pinned:     no\n"
            "tally:      attack=1\n"
            "served by:  n2 (lag 0)\n"
            "votes:\n"
            "AGENT    STATE   OBSERVED                  EXPIRES\n"
            "agent-7  attack  2027-01-15T08:00:00.000Z  -\n");
  response.mutable_state()->clear_votes();
  EXPECT_THAT(GetTable(response), HasSubstr("votes: none\n"));
}

TEST(OutputTest, JsonIsOneLineWithEveryFieldAndParsesBack) {
  v1::ObjectState state = State("site-1", "attack", 3);
  std::string line = JsonLine(state);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_THAT(line, HasSubstr("\"objectKey\":\"site-1\""));
  EXPECT_THAT(line, HasSubstr("\"version\":\"3\""));
  EXPECT_THAT(line, HasSubstr("\"pinned\":false"));  // defaults are printed for scripts
  EXPECT_THAT(line, HasSubstr("\"updatedAt\":\"2027-01-15T08:00:00.123Z\""));
  v1::ObjectState parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), state.SerializeAsString());

  v1::WatchStateResponse event;
  event.mutable_change()->set_object_key("k");
  event.mutable_change()->set_cause(v1::SET);
  event.set_resume_token("r1");
  line = JsonLine(event);
  EXPECT_THAT(line, HasSubstr("\"change\":{"));
  EXPECT_THAT(line, HasSubstr("\"cause\":\"SET\""));
  EXPECT_THAT(line, HasSubstr("\"resumeToken\":\"r1\""));
}

TEST(OutputTest, WatchLinesPerEventKind) {
  v1::WatchStateResponse change;
  change.mutable_change()->set_object_key("site-1");
  change.mutable_change()->set_old_state("ok");
  change.mutable_change()->set_new_state("attack");
  change.mutable_change()->set_version(4);
  change.mutable_change()->set_cause(v1::REPORT);
  change.mutable_change()->mutable_time()->set_seconds(1'800'000'000);
  EXPECT_EQ(WatchLine(change), "2027-01-15T08:00:00.000Z  report  site-1  ok -> attack  v4\n");
  change.mutable_change()->clear_new_state();
  change.mutable_change()->set_cause(v1::PURGE);
  EXPECT_EQ(WatchLine(change), "2027-01-15T08:00:00.000Z  purge  site-1  ok -> -  v4\n");

  v1::WatchStateResponse initial;
  *initial.mutable_initial() = State("site-2", "ok", 1);
  EXPECT_EQ(WatchLine(initial), "2027-01-15T08:00:00.123Z  initial  site-2  ok  v1\n");
  v1::WatchStateResponse done;
  done.mutable_snapshot_done();
  EXPECT_THAT(WatchLine(done), HasSubstr("snapshot done"));
  v1::WatchStateResponse progress;
  progress.mutable_progress();
  EXPECT_EQ(WatchLine(progress), "");
}

TEST(OutputTest, DescribeShowsNodesThenPartitions) {
  v1::DescribeClusterResponse cluster;
  v1::NodeInfo* node = cluster.add_nodes();
  node->set_id("n1");
  node->set_endpoint("127.0.0.1:4000");
  node->set_alive(true);
  v1::PartitionInfo* p = cluster.add_partitions();
  p->set_scenario("demo");
  p->set_partition(0);
  p->set_active_node("n1");
  p->add_standbys("n2");
  p->add_standbys("n3");
  p->set_applied_offset(10);
  p->set_end_offset(12);
  p->set_lag(2);
  p->set_status(v1::RESTORING);
  EXPECT_EQ(DescribeTable(cluster),
            "NODE  ENDPOINT        ALIVE  LAST HEARTBEAT\n"
            "n1    127.0.0.1:4000  yes    -\n"
            "\n"
            "SCENARIO  PARTITION  STATUS     ACTIVE  STANDBYS  APPLIED  END  LAG\n"
            "demo      0          RESTORING  n1      n2,n3     10       12   2\n");
}

TEST(OutputTest, TokenText) { EXPECT_EQ(TokenText("w1.3.17"), "token: w1.3.17\n"); }

}  // namespace
}  // namespace tally::tallyctl
