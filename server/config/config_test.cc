#include "server/config/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::config {
namespace {

using ::testing::HasSubstr;

constexpr char kTextproto[] = R"pb(
  app_id: "tally"
  kafka { bootstrap_servers: "127.0.0.1:9092" }
  scenarios {
    name: "site-under-attack"
    partitions: 6
    reducer { majority { min_votes: 2 } }
  }
  node { enabled: true data_dir: "/tmp/x" node_id: "node-1" }
  server { listen_address: "127.0.0.1:0" }
)pb";

v1::Config Valid() {
  auto config = ParseConfig(kTextproto, "test");
  EXPECT_TRUE(config.ok()) << config.status();
  ApplyDefaults(*config);
  return *config;
}

TEST(ConfigTest, TextprotoParsesAndValidates) {
  v1::Config config = Valid();
  EXPECT_EQ(config.scenarios(0).partitions(), 6);
  EXPECT_EQ(config.scenarios(0).default_ttl().seconds(), 60);
  EXPECT_EQ(config.node().heartbeat_interval().seconds(), 1);
  EXPECT_EQ(config.router().default_deadline().seconds(), 10);
  EXPECT_EQ(config.router().watch_progress_interval().seconds(), 10);
  EXPECT_EQ(config.router().node_calls_in_flight(), 4);
  EXPECT_EQ(config.router().node_batch_max(), 64);
  EXPECT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
}

TEST(ConfigTest, JsonParsesToTheSameConfig) {
  auto json = ParseConfig(R"({
    "appId": "tally",
    "kafka": {"bootstrapServers": "127.0.0.1:9092"},
    "scenarios": [{"name": "site-under-attack", "partitions": 6,
                   "reducer": {"majority": {"minVotes": 2}}}],
    "node": {"enabled": true, "dataDir": "/tmp/x", "nodeId": "node-1"},
    "server": {"listenAddress": "127.0.0.1:0"}
  })",
                          "test.json");
  ASSERT_TRUE(json.ok()) << json.status();
  ApplyDefaults(*json);
  EXPECT_EQ(json->SerializeAsString(), Valid().SerializeAsString());
}

TEST(ConfigTest, UnknownFieldIsAnErrorWithItsPosition) {
  auto config = ParseConfig("app_id: \"x\"\nbogus: 1\n", "tallyd.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("tallyd.textproto"));
  EXPECT_THAT(config.status().message(), HasSubstr("2:"));
  EXPECT_THAT(config.status().message(), HasSubstr("bogus"));
}

TEST(ConfigTest, UnknownJsonFieldIsAnError) {
  auto config = ParseConfig(R"({"appId": "x", "bogus": 1})", "c.json");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("bogus"));
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto config = LoadConfigFile("/nonexistent/tally.textproto");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("/nonexistent/tally.textproto"));
}

struct BadCase {
  std::string name;
  std::function<void(v1::Config&)> mutate;
  std::string expected;
};

TEST(ConfigTest, InvalidFieldsAreNamed) {
  std::vector<BadCase> cases = {
      {"app_id", [](v1::Config& c) { c.set_app_id("Bad App"); }, "app_id: must be"},
      {"bootstrap", [](v1::Config& c) { c.mutable_kafka()->clear_bootstrap_servers(); },
       "kafka.bootstrap_servers: must not be empty"},
      {"no scenarios", [](v1::Config& c) { c.clear_scenarios(); }, "scenarios: at least one"},
      {"scenario name", [](v1::Config& c) { c.mutable_scenarios(0)->set_name("a.b"); },
       "scenarios[0].name: must be"},
      {"duplicate scenario", [](v1::Config& c) { *c.add_scenarios() = c.scenarios(0); },
       "scenarios[1].name: \"site-under-attack\" appears twice"},
      {"partitions", [](v1::Config& c) { c.mutable_scenarios(0)->set_partitions(0); },
       "scenarios[0].partitions: must be in [1, 10000], got 0"},
      {"ttl", [](v1::Config& c) { c.mutable_scenarios(0)->mutable_default_ttl()->set_seconds(-1); },
       "scenarios[0].default_ttl: must be at least 1ms"},
      {"reducer", [](v1::Config& c) { c.mutable_scenarios(0)->clear_reducer(); },
       "scenarios[0]: reducer"},
      {"data dir", [](v1::Config& c) { c.mutable_node()->clear_data_dir(); },
       "node.data_dir: must not be empty"},
      {"node id", [](v1::Config& c) { c.mutable_node()->set_node_id(""); },
       "node.node_id: must be"},
      {"listen", [](v1::Config& c) { c.mutable_server()->clear_listen_address(); },
       "server.listen_address: must not be empty"},
      {"tls cert without key",
       [](v1::Config& c) { c.mutable_server()->mutable_tls()->set_cert_file("/c.pem"); },
       "server.tls.key_file: cert_file and key_file go together"},
      {"mtls without ca",
       [](v1::Config& c) {
         c.mutable_server()->mutable_tls()->set_cert_file("/c.pem");
         c.mutable_server()->mutable_tls()->set_key_file("/c.key");
         c.mutable_server()->mutable_tls()->set_require_client_cert(true);
       },
       "server.tls.require_client_cert: needs cert_file, key_file and ca_file"},
      {"no role", [](v1::Config& c) { c.mutable_node()->set_enabled(false); },
       "neither node.enabled nor router.enabled"},
      {"heartbeat",
       [](v1::Config& c) { c.mutable_node()->mutable_heartbeat_interval()->set_seconds(0); },
       "node.heartbeat_interval: must be at least 10ms"},
      {"nice too low", [](v1::Config& c) { c.mutable_node()->set_processor_nice(-21); },
       "node.processor_nice: must be between -20 and 19, got -21"},
      {"calls in flight", [](v1::Config& c) { c.mutable_router()->set_node_calls_in_flight(-1); },
       "router.node_calls_in_flight: must be >= 1, got -1"},
      {"batch too large", [](v1::Config& c) { c.mutable_router()->set_node_batch_max(1001); },
       "router.node_batch_max: must be in [1, 1000], got 1001"},
      {"nice too high", [](v1::Config& c) { c.mutable_node()->set_processor_nice(20); },
       "node.processor_nice: must be between -20 and 19, got 20"},
      {"progress too often",
       [](v1::Config& c) {
         c.mutable_router()->mutable_watch_progress_interval()->set_seconds(0);
         c.mutable_router()->mutable_watch_progress_interval()->set_nanos(500'000'000);
       },
       "router.watch_progress_interval: must be at least 1s"},
  };
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.name);
    v1::Config config = Valid();
    bad.mutate(config);
    absl::Status status = ValidateConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(bad.expected));
  }
}

TEST(ConfigTest, TopicNamesCarryAppAndScenario) {
  v1::Config config = Valid();
  EXPECT_EQ(ReportsTopic(config, "s"), "tally.s.reports");
  EXPECT_EQ(ChangelogTopic(config, "s"), "tally.s.changelog");
  EXPECT_EQ(ChangesTopic(config, "s"), "tally.s.changes");
  EXPECT_EQ(DeadLetterTopic(config, "s"), "tally.s.dlq");
}

}  // namespace
}  // namespace tally::config
