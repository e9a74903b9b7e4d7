// Restore benchmark: fills a compacted changelog partition with N distinct objects (each an
// ObjectRecord with 5 votes, as the processor writes them), then times ChangelogRestorer into an
// empty shard (opened as the processor opens shards: synced commits). Prints records/s next to
// two ceilings measured in the same run on the same broker and disk:
// - reading the partition without applying anything: a bare librdkafka consumer with the
//   restorer's settings (ChangelogRestorer::FetchProperties), polling from the same offset;
// - writing the same records into a shard from memory the way the restorer writes them
//   (staged records, PutStaged, its transaction size, no fsync until one Sync at the end).
// Each figure is the median of --runs runs (the development machine is shared and noisy), with
// the slowest and fastest run beside it.
//   restore_bench BOOTSTRAP [N=1000000] [RUNS=3]

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

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

using tally::node::ChangelogRestorer;
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

// Records per second of each run of one figure.
struct Figure {
  std::vector<double> rates;
  double Median() const {
    std::vector<double> sorted = rates;
    std::sort(sorted.begin(), sorted.end());
    return sorted[sorted.size() / 2];
  }
  double Min() const { return *std::min_element(rates.begin(), rates.end()); }
  double Max() const { return *std::max_element(rates.begin(), rates.end()); }
};

std::string Thousands(double value) {
  std::string digits = absl::StrCat(static_cast<int64_t>(value + 0.5));
  for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3) digits.insert(at, ",");
  return digits;
}

// Polls `topic`/0 from offset 0 to its end with the restorer's consumer settings; returns the
// records read per second.
absl::StatusOr<double> RawConsume(const tally::kafka::Properties& props, const std::string& topic,
                                  int64_t n) {
  tally::kafka::Properties settings = ChangelogRestorer::FetchProperties();
  settings["group.id"] = "bench";
  settings["enable.auto.commit"] = "false";
  auto conf = tally::kafka::BuildConf(props, settings);
  if (!conf.ok()) return conf.status();
  auto consumer = tally::kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer.ok()) return consumer.status();
  rd_kafka_t* rk = consumer->get();
  rd_kafka_poll_set_consumer(rk);
  // Connected and the partition's leader known before the clock starts, as in the restorer.
  tally::kafka::Admin admin(rk);
  if (auto watermarks = admin.WatermarkOffsets(topic, 0); !watermarks.ok()) {
    return watermarks.status();
  }
  const absl::Time start = absl::Now();
  tally::kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), 0)->offset = 0;
  rd_kafka_assign(rk, list.get());
  int64_t consumed = 0;
  for (bool eof = false; !eof;) {
    tally::kafka::MessagePtr m(rd_kafka_consumer_poll(rk, 1000));
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) eof = true;
    if (!m->err) ++consumed;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  rd_kafka_assign(rk, nullptr);
  rd_kafka_consumer_close(rk);
  if (consumed != n) {
    return absl::InternalError(absl::StrCat("consumed ", consumed, " records, expected ", n));
  }
  return static_cast<double>(n) / seconds;
}

// Writes `records` into a fresh shard in `dir` as the restorer writes them; returns records/s.
absl::StatusOr<double> RawShardWrites(
    const std::string& dir, const std::vector<std::pair<std::string, std::string>>& records) {
  std::vector<tally::storage::StagedObjects> chunks;
  for (size_t i = 0; i < records.size(); ++i) {
    if (i % ChangelogRestorer::kRecordsPerTxn == 0) chunks.emplace_back();
    if (auto s = chunks.back().PutObjectBytes(records[i].first, records[i].second); !s.ok()) {
      return s;
    }
  }
  auto shard = tally::storage::Shard::Open(dir, {});
  if (!shard.ok()) return shard.status();
  const absl::Time start = absl::Now();
  for (tally::storage::StagedObjects& chunk : chunks) {
    auto batch = (*shard)->NewWriteBatch();
    if (!batch.ok()) return batch.status();
    (*batch)->SkipSync();
    (*batch)->PutStaged(std::move(chunk));
    if (auto s = (*batch)->Commit(); !s.ok()) return s;
  }
  if (auto s = (*shard)->Sync(); !s.ok()) return s;
  return static_cast<double>(records.size()) / absl::ToDoubleSeconds(absl::Now() - start);
}

// Restores `topic`/0 into a fresh shard in `dir`; returns records/s.
absl::StatusOr<double> Restore(const tally::kafka::Properties& props, const std::string& topic,
                               const std::string& dir, int64_t n) {
  auto shard = tally::storage::Shard::Open(dir, {});
  if (!shard.ok()) return shard.status();
  ChangelogRestorer restorer(props);
  auto stats = restorer.Restore(**shard, topic, 0);
  if (!stats.ok()) return stats.status();
  auto reader = (*shard)->NewReader();
  if (!reader.ok()) return reader.status();
  auto count = (*reader)->CountStates();
  if (!count.ok()) return count.status();
  if (static_cast<int64_t>(*count) != n || stats->records != n) {
    return absl::InternalError(absl::StrCat("restored ", stats->records, " records and ", *count,
                                            " states, expected ", n));
  }
  return static_cast<double>(n) / absl::ToDoubleSeconds(stats->elapsed);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: restore_bench BOOTSTRAP [N] [RUNS]\n");
    return 2;
  }
  const std::string bootstrap = argv[1];
  int64_t n = 1'000'000;
  int runs = 3;
  if (argc > 2 && (!absl::SimpleAtoi(argv[2], &n) || n <= 0)) return 2;
  if (argc > 3 && (!absl::SimpleAtoi(argv[3], &runs) || runs <= 0)) return 2;
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
  std::vector<std::pair<std::string, std::string>> records;
  records.reserve(n);
  for (int64_t i = 0; i < n; ++i) records.emplace_back(Key(i), MakeObject(i).SerializeAsString());
  auto conf = tally::kafka::BuildConf(props, {{"linger.ms", "20"},
                                              {"batch.num.messages", "10000"},
                                              {"queue.buffering.max.messages", "2000000"},
                                              {"compression.type", "lz4"}});
  if (!conf.ok()) return Fail(conf.status());
  auto producer = tally::kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer.ok()) return Fail(producer.status());
  absl::Time t0 = absl::Now();
  for (const auto& [key, value] : records) {
    while (rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer->get(), 10);
    }
  }
  rd_kafka_flush(producer->get(), 300000);
  const double fill_rate = static_cast<double>(n) / absl::ToDoubleSeconds(absl::Now() - t0);

  // The runs, interleaved so that a slow spell of the machine hits every figure alike. Each
  // shard is removed after its run so that its pages do not crowd the next one's.
  Figure restore, consume, lmdb;
  tally::test::TempDir dir;
  for (int run = 0; run < runs; ++run) {
    auto consumed = RawConsume(props, topic, n);
    if (!consumed.ok()) return Fail(consumed.status());
    consume.rates.push_back(*consumed);

    const std::string raw_dir = absl::StrCat(dir.path(), "/raw-", run);
    auto written = RawShardWrites(raw_dir, records);
    if (!written.ok()) return Fail(written.status());
    lmdb.rates.push_back(*written);
    std::filesystem::remove_all(raw_dir);

    const std::string restored_dir = absl::StrCat(dir.path(), "/restored-", run);
    auto restored = Restore(props, topic, restored_dir, n);
    if (!restored.ok()) return Fail(restored.status());
    restore.rates.push_back(*restored);
    std::filesystem::remove_all(restored_dir);
  }

  auto row = [&](const std::string& name, const Figure& figure) {
    std::printf("| %s | %s | %s – %s | %.2f |\n", name.c_str(), Thousands(figure.Median()).c_str(),
                Thousands(figure.Min()).c_str(), Thousands(figure.Max()).c_str(),
                restore.Median() / figure.Median());
  };
  std::printf(
      "| figure (%s objects, median of %d runs) | records/s | slowest – fastest run | "
      "restore / this |\n|---|---:|---:|---:|\n",
      Thousands(static_cast<double>(n)).c_str(), runs);
  row("restore (changelog → LMDB shard)", restore);
  row("ceiling: bare librdkafka consume of the partition", consume);
  row("ceiling: the restore's LMDB writes alone, from memory", lmdb);
  std::printf("| (fill: produce to the changelog, once) | %s | | |\n",
              Thousands(fill_rate).c_str());
  return 0;
}
