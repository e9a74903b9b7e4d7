// Kafka transactions against the real broker: what the processor's exactly-once loop relies on.
// A read_committed consumer must see exactly the committed records, and a second producer with
// the same transactional.id must fence the first (the zombie's commit fails, its writes vanish).

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kafka/admin.h"
#include "server/kafka/config.h"
#include "server/kafka/errors.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/unique_name.h"
#include "tests/testing/wait.h"

namespace tally::kafka {
namespace {

using ::testing::ElementsAre;

constexpr absl::Duration kDeadline = absl::Seconds(60);
constexpr int kTimeoutMs = 30000;

class KafkaTransactionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = test::KafkaBootstrapOrDie();
    topic_ = test::UniqueName("tally.it.txn");
    absl::StatusOr<std::unique_ptr<Admin>> admin =
        Admin::Create({{"bootstrap.servers", bootstrap_}});
    ASSERT_TRUE(admin.ok()) << admin.status();
    admin_ = *std::move(admin);
    ASSERT_TRUE(admin_->EnsureTopics({TopicSpec(topic_, 1)}).ok());
  }

  HandlePtr NewClient(rd_kafka_type_t type, const Properties& properties) {
    absl::StatusOr<ConfPtr> conf = BuildConf({{"bootstrap.servers", bootstrap_}}, properties);
    EXPECT_TRUE(conf.ok()) << conf.status();
    if (!conf.ok()) return nullptr;
    absl::StatusOr<HandlePtr> rk = NewHandle(type, *std::move(conf));
    EXPECT_TRUE(rk.ok()) << rk.status();
    return rk.ok() ? *std::move(rk) : nullptr;
  }

  // A transactional producer, initialized (which fences earlier producers with the same id).
  HandlePtr TransactionalProducer(const std::string& transactional_id) {
    HandlePtr producer = NewClient(RD_KAFKA_PRODUCER, {{"transactional.id", transactional_id},
                                                       {"enable.idempotence", "true"}});
    if (producer == nullptr) return nullptr;
    absl::Status init =
        KafkaStatus(rd_kafka_init_transactions(producer.get(), kTimeoutMs), "init transactions");
    EXPECT_TRUE(init.ok()) << init;
    return init.ok() ? std::move(producer) : nullptr;
  }

  // Produces `values` to partition 0 and waits until they are written (inside the open
  // transaction, if any), so an abort has something on the log to hide.
  void ProduceAndFlush(rd_kafka_t* producer, const std::vector<std::string>& values) {
    for (const std::string& value : values) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer, RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_PARTITION(0),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
      ASSERT_TRUE(KafkaStatus(err, "produce").ok()) << KafkaStatus(err, "produce");
    }
    ASSERT_EQ(rd_kafka_flush(producer, kTimeoutMs), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  // The end of partition 0 including records of open or aborted transactions and the
  // transaction markers (the high watermark): a handle with read_uncommitted isolation asks.
  int64_t HighWatermark() {
    HandlePtr rk = NewClient(RD_KAFKA_CONSUMER, {{"isolation.level", "read_uncommitted"}});
    if (rk == nullptr) return -1;
    absl::StatusOr<std::pair<int64_t, int64_t>> offsets =
        Admin(rk.get()).WatermarkOffsets(topic_, 0);
    EXPECT_TRUE(offsets.ok()) << offsets.status();
    return offsets.ok() ? offsets->second : -1;
  }

  // Waits until the last stable offset reaches the high watermark, i.e. the markers of every
  // finished transaction are written (commit returns before the coordinator writes them), and
  // returns that offset.
  int64_t WaitForStableEnd() {
    const int64_t high = HighWatermark();
    EXPECT_GT(high, 0);
    bool stable = test::WaitFor(
        [&] {
          absl::StatusOr<std::pair<int64_t, int64_t>> offsets = admin_->WatermarkOffsets(topic_, 0);
          return offsets.ok() && offsets->second >= high;
        },
        kDeadline);
    EXPECT_TRUE(stable) << "the last stable offset did not reach " << high;
    return high;
  }

  // The values in partition 0 from the beginning up to `end`, as a consumer with `isolation`
  // (read_committed or read_uncommitted) sees them. Ends at a partition EOF at or after `end`.
  absl::StatusOr<std::vector<std::string>> ReadPartition(const std::string& isolation,
                                                         int64_t end) {
    HandlePtr consumer = NewClient(RD_KAFKA_CONSUMER, {{"group.id", test::UniqueName("tally.it")},
                                                       {"isolation.level", isolation},
                                                       {"enable.partition.eof", "true"},
                                                       {"enable.auto.commit", "false"}});
    if (consumer == nullptr) return absl::InternalError("no consumer");
    rd_kafka_poll_set_consumer(consumer.get());
    rd_kafka_topic_partition_list_t* partitions = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(partitions, topic_.c_str(), 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), partitions);
    rd_kafka_topic_partition_list_destroy(partitions);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, "assign");

    std::vector<std::string> values;
    absl::Status status = absl::DeadlineExceededError(
        absl::StrCat(isolation, " consumer did not reach offset ", end, " in time"));
    const absl::Time deadline = absl::Now() + kDeadline;
    while (absl::Now() < deadline) {
      rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer.get(), 100);
      if (message == nullptr) continue;
      const rd_kafka_resp_err_t message_err = message->err;
      const int64_t offset = message->offset;
      if (message_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        values.emplace_back(static_cast<const char*>(message->payload), message->len);
      }
      rd_kafka_message_destroy(message);
      if (message_err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (offset >= end) {
          status = absl::OkStatus();
          break;
        }
      } else if (message_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = KafkaStatus(message_err, "consume");
        break;
      }
    }
    rd_kafka_consumer_close(consumer.get());
    if (!status.ok()) return status;
    return values;
  }

  std::string bootstrap_;
  std::string topic_;
  std::unique_ptr<Admin> admin_;
};

TEST_F(KafkaTransactionsTest, ReadCommittedSeesOnlyCommittedTransactions) {
  HandlePtr producer = TransactionalProducer(test::UniqueName("tally-it-txn"));
  ASSERT_NE(producer, nullptr);

  ASSERT_TRUE(KafkaStatus(rd_kafka_begin_transaction(producer.get()), "begin").ok());
  ProduceAndFlush(producer.get(), {"aborted-0", "aborted-1", "aborted-2"});
  absl::Status aborted =
      KafkaStatus(rd_kafka_abort_transaction(producer.get(), kTimeoutMs), "abort");
  ASSERT_TRUE(aborted.ok()) << aborted;

  ASSERT_TRUE(KafkaStatus(rd_kafka_begin_transaction(producer.get()), "begin").ok());
  ProduceAndFlush(producer.get(), {"committed-0", "committed-1", "committed-2"});
  absl::Status committed =
      KafkaStatus(rd_kafka_commit_transaction(producer.get(), kTimeoutMs), "commit");
  ASSERT_TRUE(committed.ok()) << committed;

  const int64_t end = WaitForStableEnd();

  absl::StatusOr<std::vector<std::string>> read_committed = ReadPartition("read_committed", end);
  ASSERT_TRUE(read_committed.ok()) << read_committed.status();
  EXPECT_THAT(*read_committed, ElementsAre("committed-0", "committed-1", "committed-2"));

  // The aborted records are on the log: read_committed filtered them, they were not lost.
  absl::StatusOr<std::vector<std::string>> read_uncommitted =
      ReadPartition("read_uncommitted", end);
  ASSERT_TRUE(read_uncommitted.ok()) << read_uncommitted.status();
  EXPECT_THAT(*read_uncommitted, ElementsAre("aborted-0", "aborted-1", "aborted-2", "committed-0",
                                             "committed-1", "committed-2"));
}

TEST_F(KafkaTransactionsTest, SecondProducerWithSameTransactionalIdFencesTheFirst) {
  const std::string transactional_id = test::UniqueName("tally-it-fence");
  HandlePtr zombie = TransactionalProducer(transactional_id);
  ASSERT_NE(zombie, nullptr);
  ASSERT_TRUE(KafkaStatus(rd_kafka_begin_transaction(zombie.get()), "begin").ok());
  ProduceAndFlush(zombie.get(), {"from-zombie"});

  // Initializing the successor bumps the epoch, fences the zombie and aborts its open transaction.
  HandlePtr successor = TransactionalProducer(transactional_id);
  ASSERT_NE(successor, nullptr);

  KafkaError zombie_commit =
      TakeKafkaError(rd_kafka_commit_transaction(zombie.get(), kTimeoutMs), "commit");
  EXPECT_FALSE(zombie_commit.status.ok());
  EXPECT_TRUE(zombie_commit.fatal) << zombie_commit.status;
  EXPECT_EQ(zombie_commit.status.code(), absl::StatusCode::kFailedPrecondition)
      << zombie_commit.status;
  char reason[512];
  const rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(zombie.get(), reason, sizeof(reason));
  EXPECT_TRUE(fatal == RD_KAFKA_RESP_ERR__FENCED || fatal == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
              fatal == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
      << rd_kafka_err2name(fatal) << ": " << reason;

  ASSERT_TRUE(KafkaStatus(rd_kafka_begin_transaction(successor.get()), "begin").ok());
  ProduceAndFlush(successor.get(), {"from-successor"});
  absl::Status committed =
      KafkaStatus(rd_kafka_commit_transaction(successor.get(), kTimeoutMs), "commit");
  ASSERT_TRUE(committed.ok()) << committed;

  const int64_t end = WaitForStableEnd();
  absl::StatusOr<std::vector<std::string>> values = ReadPartition("read_committed", end);
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_THAT(*values, ElementsAre("from-successor"));
  // The zombie's record did reach the log; the fencing aborted it.
  absl::StatusOr<std::vector<std::string>> all = ReadPartition("read_uncommitted", end);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(*all, ElementsAre("from-zombie", "from-successor"));
}

}  // namespace
}  // namespace tally::kafka
