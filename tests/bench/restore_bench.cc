// Restore benchmark: fills a compacted changelog partition with N distinct objects (each an
// ObjectRecord with 5 votes, as the processor writes them), then times ChangelogRestorer into an
// empty shard. Prints records/s next to two ceilings measured in the same run on the same
// broker and disk: reading the partition without applying anything (raw librdkafka consume), and
// writing the same objects straight into a shard (raw LMDB puts).
//   restore_bench BOOTSTRAP [N=1000000]

#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/kafka/admin.h"
#include "server/kafka/config.h"
#include "server/node/changelog_restorer.h"
#include "server/storage/shard.h"
#include "tally/records/v1/records.pb.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unique_name.h"

namespace {

using tally::records::v1::ObjectRecord;

ObjectRecord MakeObject(int64_t i) {
  ObjectRecord record;
  record.mutable_state()->set_state(i % 3 ? "ok" : "attack");
  record.mutable_state()->set_version(1 + i % 7);
  record.mutable_state()->set_updated_at_ms(1'700'000'000'000 + i);
  for (int a = 0; a < 5; ++a) {
    auto* vote = record.add_votes();
    vote->set_agent_id(absl::StrCat("agent-", a));
    vote->set_state(a < 3 ? "ok" : "attack");
    vote->set_observed_at_ms(1'700'000'000'000 + i);
    vote->set_expires_at_ms(1'800'000'000'000 + i);
    ++(*record.mutable_state()->mutable_tally())[vote->state()];
  }
  record.set_source_offset(i);
  return record;
}

std::string Key(int64_t i) { return absl::StrCat("site-", i); }

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "restore_bench: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: restore_bench BOOTSTRAP [N]\n");
    return 2;
  }
  const std::string bootstrap = argv[1];
  int64_t n = 1'000'000;
  if (argc > 2 && !absl::SimpleAtoi(argv[2], &n)) return 2;
  const std::string topic = tally::test::UniqueName("bench-restore-changelog");
  tally::kafka::Properties props = {{"bootstrap.servers", bootstrap}};

  auto admin = tally::kafka::Admin::Create(props);
  if (!admin.ok()) return Fail(admin.status());
  if (auto s = (*admin)->EnsureTopics(
          {tally::kafka::TopicSpec(topic, 1, 1, {{"cleanup.policy", "compact"}})});
      !s.ok()) {
    return Fail(s);
  }

  // Fill.
  auto conf = tally::kafka::BuildConf(props, {{"linger.ms", "20"},
                                              {"batch.num.messages", "10000"},
                                              {"queue.buffering.max.messages", "2000000"},
                                              {"compression.type", "lz4"}});
  if (!conf.ok()) return Fail(conf.status());
  auto producer = tally::kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer.ok()) return Fail(producer.status());
  absl::Time t0 = absl::Now();
  for (int64_t i = 0; i < n; ++i) {
    std::string key = Key(i), value = MakeObject(i).SerializeAsString();
    while (rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(value.data(), value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer->get(), 10);
    }
  }
  rd_kafka_flush(producer->get(), 300000);
  double fill_s = absl::ToDoubleSeconds(absl::Now() - t0);

  // Ceiling 1: raw consume of the partition (no parsing, no LMDB).
  auto cconf = tally::kafka::BuildConf(props, {{"group.id", "bench"},
                                               {"enable.partition.eof", "true"},
                                               {"enable.auto.commit", "false"},
                                               {"fetch.message.max.bytes", "8388608"},
                                               {"queued.max.messages.kbytes", "262144"}});
  if (!cconf.ok()) return Fail(cconf.status());
  auto consumer = tally::kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*cconf));
  if (!consumer.ok()) return Fail(consumer.status());
  rd_kafka_poll_set_consumer(consumer->get());
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(consumer->get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  t0 = absl::Now();
  int64_t consumed = 0;
  for (bool eof = false; !eof;) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer->get(), 1000);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) eof = true;
    if (!m->err) ++consumed;
    rd_kafka_message_destroy(m);
  }
  double consume_s = absl::ToDoubleSeconds(absl::Now() - t0);
  rd_kafka_consumer_close(consumer->get());

  // Ceiling 2: the same objects written straight into a shard in the restorer's batch size.
  tally::test::TempDir dir;
  double lmdb_s = 0;
  {
    auto shard = tally::storage::Shard::Open(dir.path() + "/raw", {});
    if (!shard.ok()) return Fail(shard.status());
    t0 = absl::Now();
    for (int64_t i = 0; i < n;) {
      auto batch = (*shard)->NewWriteBatch();
      if (!batch.ok()) return Fail(batch.status());
      for (int64_t j = 0; j < tally::node::ChangelogRestorer::kRecordsPerTxn && i < n; ++j, ++i) {
        ObjectRecord record = MakeObject(i);
        tally::storage::ObjectData data;
        data.state = record.state();
        data.votes.assign(record.votes().begin(), record.votes().end());
        (*batch)->PutObject(Key(i), std::move(data));
      }
      if (auto s = (*batch)->Commit(); !s.ok()) return Fail(s);
    }
    lmdb_s = absl::ToDoubleSeconds(absl::Now() - t0);
  }

  // The restore itself.
  auto shard = tally::storage::Shard::Open(dir.path() + "/restored", {});
  if (!shard.ok()) return Fail(shard.status());
  tally::node::ChangelogRestorer restorer(props);
  auto stats = restorer.Restore(**shard, topic, 0);
  if (!stats.ok()) return Fail(stats.status());
  double restore_s = absl::ToDoubleSeconds(stats->elapsed);
  auto reader = (*shard)->NewReader();
  auto count = (*reader)->CountStates();
  if (!count.ok() || static_cast<int64_t>(*count) != n || stats->records != n) {
    std::fprintf(stderr, "restore_bench: restored %lld records, %llu states, expected %lld\n",
                 static_cast<long long>(stats->records),
                 static_cast<unsigned long long>(count.ok() ? *count : 0),
                 static_cast<long long>(n));
    return 1;
  }

  auto rate = [n](double s) { return static_cast<double>(n) / s; };
  std::printf("| figure | records/s | restore / this |\n|---|---:|---:|\n");
  std::printf("| restore (changelog → LMDB shard, %lld objects) | %.0f | 1.00 |\n",
              static_cast<long long>(n), rate(restore_s));
  std::printf("| ceiling: raw librdkafka consume of the partition | %.0f | %.2f |\n",
              static_cast<double>(consumed) / consume_s,
              rate(restore_s) / (static_cast<double>(consumed) / consume_s));
  std::printf("| ceiling: raw LMDB shard writes of the same objects | %.0f | %.2f |\n",
              rate(lmdb_s), rate(restore_s) / rate(lmdb_s));
  std::printf("| (fill: produce to the changelog) | %.0f | |\n", rate(fill_s));
  return 0;
}
