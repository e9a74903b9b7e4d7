// Admin against the real broker: topics are created as the config says, existing topics are left
// alone but must have the configured partition count, and topic questions get true answers.

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kafka/admin.h"
#include "server/kafka/config.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/unique_name.h"

namespace tally::kafka {
namespace {

using ::testing::HasSubstr;
using ::testing::Pair;

class KafkaAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = test::KafkaBootstrapOrDie();
    absl::StatusOr<std::unique_ptr<Admin>> admin =
        Admin::Create({{"bootstrap.servers", bootstrap_}});
    ASSERT_TRUE(admin.ok()) << admin.status();
    admin_ = *std::move(admin);
  }

  static TopicSpec Compacted(std::string name, int partitions) {
    return TopicSpec(std::move(name), partitions, /*replication_factor=*/1,
                     {{"cleanup.policy", "compact"}});
  }

  static std::string Message(const absl::Status& status) { return std::string(status.message()); }

  std::string bootstrap_;
  std::unique_ptr<Admin> admin_;
};

TEST_F(KafkaAdminTest, EnsureTopicsCreatesACompactedTopicWithItsPartitions) {
  const std::string topic = test::UniqueName("tally.it.admin.changelog");
  absl::Status ensured = admin_->EnsureTopics({Compacted(topic, 3)});
  ASSERT_TRUE(ensured.ok()) << ensured;

  absl::StatusOr<int> partitions = admin_->PartitionCount(topic);
  ASSERT_TRUE(partitions.ok()) << partitions.status();
  EXPECT_EQ(*partitions, 3);

  absl::StatusOr<Properties> configs = admin_->DescribeTopicConfig(topic);
  ASSERT_TRUE(configs.ok()) << configs.status();
  ASSERT_TRUE(configs->contains("cleanup.policy"));
  EXPECT_EQ(configs->at("cleanup.policy"), "compact");
}

TEST_F(KafkaAdminTest, DefaultTopicIsNotCompacted) {
  // The counterpart of the test above: DescribeTopicConfig reports what the topic has, it does
  // not echo "compact" for every topic.
  const std::string topic = test::UniqueName("tally.it.admin.plain");
  ASSERT_TRUE(admin_->EnsureTopics({TopicSpec(topic, 1)}).ok());
  absl::StatusOr<Properties> configs = admin_->DescribeTopicConfig(topic);
  ASSERT_TRUE(configs.ok()) << configs.status();
  EXPECT_EQ(configs->at("cleanup.policy"), "delete");
}

TEST_F(KafkaAdminTest, EnsureTopicsAgainIsANoOp) {
  const std::string topic = test::UniqueName("tally.it.admin.again");
  ASSERT_TRUE(admin_->EnsureTopics({Compacted(topic, 2)}).ok());

  absl::Status again = admin_->EnsureTopics({Compacted(topic, 2)});
  EXPECT_TRUE(again.ok()) << again;
  // Existing topics are not reconfigured, even when the spec's configs differ.
  TopicSpec other_configs = Compacted(topic, 2);
  other_configs.configs = {{"cleanup.policy", "delete"}};
  absl::Status different = admin_->EnsureTopics({other_configs});
  EXPECT_TRUE(different.ok()) << different;

  absl::StatusOr<int> partitions = admin_->PartitionCount(topic);
  ASSERT_TRUE(partitions.ok()) << partitions.status();
  EXPECT_EQ(*partitions, 2);
  absl::StatusOr<Properties> configs = admin_->DescribeTopicConfig(topic);
  ASSERT_TRUE(configs.ok()) << configs.status();
  EXPECT_EQ(configs->at("cleanup.policy"), "compact");
}

TEST_F(KafkaAdminTest, PartitionCountMismatchIsFailedPreconditionNamingTopicAndCounts) {
  const std::string topic = test::UniqueName("tally.it.admin.reports");
  ASSERT_TRUE(admin_->EnsureTopics({Compacted(topic, 3)}).ok());

  absl::Status mismatch = admin_->EnsureTopics({Compacted(topic, 6)});
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kFailedPrecondition) << mismatch;
  EXPECT_EQ(Message(mismatch),
            absl::StrCat("topic \"", topic, "\" has 3 partitions, the config says 6"));

  absl::StatusOr<int> partitions = admin_->PartitionCount(topic);
  ASSERT_TRUE(partitions.ok()) << partitions.status();
  EXPECT_EQ(*partitions, 3);
}

TEST_F(KafkaAdminTest, EnsureTopicsChecksExistingBeforeCreatingNew) {
  const std::string existing = test::UniqueName("tally.it.admin.old");
  const std::string created = test::UniqueName("tally.it.admin.new");
  ASSERT_TRUE(admin_->EnsureTopics({TopicSpec(existing, 2)}).ok());

  absl::Status ensured = admin_->EnsureTopics({TopicSpec(existing, 2), Compacted(created, 4)});
  ASSERT_TRUE(ensured.ok()) << ensured;
  EXPECT_EQ(admin_->PartitionCount(existing).value_or(-1), 2);
  EXPECT_EQ(admin_->PartitionCount(created).value_or(-1), 4);

  // A mismatch anywhere in the list is reported, with the offending topic named, and then
  // nothing is created.
  const std::string not_created = test::UniqueName("tally.it.admin.not-created");
  absl::Status mismatch = admin_->EnsureTopics(
      {TopicSpec(not_created, 4), TopicSpec(created, 4), TopicSpec(existing, 5)});
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kFailedPrecondition) << mismatch;
  EXPECT_THAT(Message(mismatch), HasSubstr(existing));
  EXPECT_EQ(admin_->PartitionCount(not_created).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KafkaAdminTest, MissingTopicIsNotFoundAndNamed) {
  const std::string topic = test::UniqueName("tally.it.admin.missing");
  absl::StatusOr<int> partitions = admin_->PartitionCount(topic);
  EXPECT_EQ(partitions.status().code(), absl::StatusCode::kNotFound) << partitions.status();
  EXPECT_THAT(Message(partitions.status()), HasSubstr(topic));

  absl::StatusOr<Properties> configs = admin_->DescribeTopicConfig(topic);
  EXPECT_EQ(configs.status().code(), absl::StatusCode::kNotFound) << configs.status();
  EXPECT_THAT(Message(configs.status()), HasSubstr(topic));

  absl::StatusOr<std::pair<int64_t, int64_t>> offsets = admin_->WatermarkOffsets(topic, 0);
  EXPECT_EQ(offsets.status().code(), absl::StatusCode::kNotFound) << offsets.status();
  EXPECT_THAT(Message(offsets.status()), HasSubstr(topic));

  // Asking did not create it.
  EXPECT_EQ(admin_->PartitionCount(topic).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KafkaAdminTest, TopicTheBrokerRejectsIsInvalidArgumentNamingTheTopic) {
  const std::string topic = test::UniqueName("tally.it.admin.bad");
  TopicSpec bad_config(topic, 1, -1, {{"cleanup.policy", "bogus"}});
  absl::Status status = admin_->EnsureTopics({bad_config});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(Message(status), HasSubstr(topic));

  // One broker cannot hold three replicas.
  TopicSpec too_many_replicas(topic, 1, /*replication_factor=*/3);
  status = admin_->EnsureTopics({too_many_replicas});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(Message(status), HasSubstr(topic));

  EXPECT_EQ(admin_->PartitionCount(topic).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KafkaAdminTest, InvalidSpecsAreInvalidArgument) {
  const std::string topic = test::UniqueName("tally.it.admin.spec");
  EXPECT_EQ(admin_->EnsureTopics({TopicSpec(topic, 0)}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(admin_->EnsureTopics({TopicSpec("", 1)}).code(), absl::StatusCode::kInvalidArgument);
  absl::Status twice = admin_->EnsureTopics({TopicSpec(topic, 1), TopicSpec(topic, 2)});
  EXPECT_EQ(twice.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(twice), HasSubstr(topic));
  EXPECT_EQ(admin_->PartitionCount(topic).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KafkaAdminTest, WatermarkOffsetsFollowWrittenRecords) {
  const std::string topic = test::UniqueName("tally.it.admin.offsets");
  ASSERT_TRUE(admin_->EnsureTopics({TopicSpec(topic, 2)}).ok());

  absl::StatusOr<ConfPtr> conf = BuildConf({{"bootstrap.servers", bootstrap_}, {"acks", "all"}});
  ASSERT_TRUE(conf.ok()) << conf.status();
  absl::StatusOr<HandlePtr> producer = NewHandle(RD_KAFKA_PRODUCER, *std::move(conf));
  ASSERT_TRUE(producer.ok()) << producer.status();
  for (int i = 0; i < 5; ++i) {
    char value[] = "v";
    ASSERT_EQ(rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                RD_KAFKA_V_PARTITION(1), RD_KAFKA_V_VALUE(value, 1),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ASSERT_EQ(rd_kafka_flush(producer->get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  absl::StatusOr<std::pair<int64_t, int64_t>> written = admin_->WatermarkOffsets(topic, 1);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_THAT(*written, Pair(0, 5));
  absl::StatusOr<std::pair<int64_t, int64_t>> empty = admin_->WatermarkOffsets(topic, 0);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(*empty, Pair(0, 0));

  absl::StatusOr<std::pair<int64_t, int64_t>> no_partition = admin_->WatermarkOffsets(topic, 7);
  EXPECT_EQ(no_partition.status().code(), absl::StatusCode::kNotFound) << no_partition.status();
}

}  // namespace
}  // namespace tally::kafka
