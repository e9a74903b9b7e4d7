#include "server/node/changelog_restorer.h"

#include <librdkafka/rdkafka.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"
#include "server/kafka/admin.h"
#include "server/kafka/errors.h"

namespace tally::node {
namespace {

using kafka::MessagePtr;
using kafka::PartitionListPtr;

}  // namespace

ChangelogRestorer::ChangelogRestorer(kafka::Properties properties)
    : properties_(std::move(properties)) {}

absl::StatusOr<RestoreStats> ChangelogRestorer::Restore(storage::Shard& shard,
                                                        const std::string& topic,
                                                        int32_t partition,
                                                        absl::Duration stall_timeout) {
  const absl::Time start_time = absl::Now();
  auto reader = shard.NewReader();
  if (!reader.ok()) return reader.status();
  auto meta = (*reader)->GetMeta();
  if (!meta.ok()) return meta.status();
  reader->reset();  // do not pin a snapshot while writing

  RestoreStats stats;
  stats.start_offset = meta->changelog_offset();
  stats.end_offset = stats.start_offset;

  auto conf = kafka::BuildConf(
      properties_, {{"group.id", absl::StrCat("tally-restore-", topic)},
                    {"enable.auto.commit", "false"},
                    {"enable.auto.offset.store", "false"},
                    {"isolation.level", "read_committed"},
                    {"enable.partition.eof", "true"},
                    {"auto.offset.reset", "earliest"},
                    {"fetch.message.max.bytes", "8388608"},
                    {"queued.max.messages.kbytes", "262144"}});
  if (!conf.ok()) return conf.status();
  auto consumer = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer.ok()) return consumer.status();
  rd_kafka_t* rk = consumer->get();
  rd_kafka_poll_set_consumer(rk);

  kafka::Admin admin(rk, stall_timeout);
  // A just-created topic can answer NOT_LEADER for a moment: retry what is retryable.
  auto watermarks = admin.WatermarkOffsets(topic, partition);
  for (absl::Time give_up = absl::Now() + stall_timeout;
       absl::IsUnavailable(watermarks.status()) && absl::Now() < give_up;) {
    absl::SleepFor(absl::Milliseconds(100));  // retry backoff
    watermarks = admin.WatermarkOffsets(topic, partition);
  }
  if (!watermarks.ok()) return watermarks.status();
  const int64_t end = watermarks->second;  // last stable offset (read_committed)
  if (stats.start_offset >= end) {
    stats.elapsed = absl::Now() - start_time;
    return stats;
  }
  log::Info("restore started", {{"topic", topic},
                                {"partition", partition},
                                {"from", stats.start_offset},
                                {"to", end}});

  PartitionListPtr assignment(
      rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), partition)->offset =
      std::max<int64_t>(stats.start_offset, watermarks->first);
  if (rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment.get()); err) {
    return kafka::KafkaStatus(err, absl::StrCat("restore ", topic, "/", partition, ": assign"));
  }

  auto batch = shard.NewWriteBatch();
  if (!batch.ok()) return batch.status();
  records::v1::ShardMeta next_meta = *meta;
  int64_t in_batch = 0;
  int64_t max_source_offset = -1;
  absl::Time last_progress = absl::Now();
  absl::Time last_log = last_progress;

  auto commit = [&](int64_t next_offset) -> absl::Status {
    next_meta.set_changelog_offset(next_offset);
    if (max_source_offset >= next_meta.source_offset()) {
      next_meta.set_source_offset(max_source_offset);
    }
    (*batch)->SetMeta(next_meta);
    if (absl::Status s = (*batch)->Commit(); !s.ok()) return s;
    stats.end_offset = next_offset;
    batch->reset();  // one open batch per shard at a time
    auto fresh = shard.NewWriteBatch();
    if (!fresh.ok()) return fresh.status();
    *batch = std::move(*fresh);
    in_batch = 0;
    return absl::OkStatus();
  };

  bool done = false;
  while (!done) {
    MessagePtr msg(rd_kafka_consumer_poll(rk, 200));
    absl::Time now = absl::Now();
    if (msg == nullptr) {
      if (now - last_progress > stall_timeout) {
        rd_kafka_assign(rk, nullptr);
        return absl::UnavailableError(absl::StrCat("restore ", topic, "/", partition,
                                                   ": no progress for ", absl::FormatDuration(stall_timeout),
                                                   " at offset ", stats.end_offset));
      }
      continue;
    }
    last_progress = now;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (absl::Status s = commit(msg->offset); !s.ok()) return s;
      done = true;
      break;
    }
    if (msg->err) {
      absl::Status status = kafka::KafkaStatus(
          msg->err, absl::StrCat("restore ", topic, "/", partition, ": fetch"));
      if (absl::IsUnavailable(status)) {
        log::Warn("restore fetch error, retrying", {{"error", status.ToString()}});
        continue;
      }
      return status;
    }
    std::string key(static_cast<const char*>(msg->key), msg->key_len);
    if (msg->payload == nullptr) {
      (*batch)->DeleteObject(key);
    } else {
      records::v1::ObjectRecord record;
      if (!record.ParseFromArray(msg->payload, static_cast<int>(msg->len))) {
        // Only Tally writes changelogs; a record it cannot read means the topic is not ours or
        // was written by an incompatible version. Refuse rather than serve wrong state.
        return absl::DataLossError(absl::StrCat("restore ", topic, "/", partition,
                                                ": unreadable changelog record at offset ",
                                                msg->offset));
      }
      storage::ObjectData data;
      data.state = std::move(*record.mutable_state());
      data.votes.assign(std::make_move_iterator(record.mutable_votes()->begin()),
                        std::make_move_iterator(record.mutable_votes()->end()));
      max_source_offset = std::max(max_source_offset, record.source_offset());
      (*batch)->PutObject(key, std::move(data));
    }
    ++stats.records;
    if (++in_batch >= kRecordsPerTxn) {
      if (absl::Status s = commit(msg->offset + 1); !s.ok()) return s;
    }
    if (now - last_log > absl::Seconds(2)) {
      last_log = now;
      double secs = absl::ToDoubleSeconds(now - start_time);
      double rate = stats.records / std::max(secs, 1e-3);
      double remaining = static_cast<double>(end - msg->offset);
      log::Info("restore progress", {{"topic", topic},
                                     {"partition", partition},
                                     {"records", stats.records},
                                     {"records_per_s", static_cast<int64_t>(rate)},
                                     {"eta_s", static_cast<int64_t>(remaining / rate)}});
    }
  }
  rd_kafka_assign(rk, nullptr);
  rd_kafka_consumer_close(rk);
  stats.elapsed = absl::Now() - start_time;
  double secs = absl::ToDoubleSeconds(stats.elapsed);
  log::Info("restore done", {{"topic", topic},
                             {"partition", partition},
                             {"records", stats.records},
                             {"seconds", secs},
                             {"records_per_s", static_cast<int64_t>(stats.records /
                                                                    std::max(secs, 1e-3))}});
  return stats;
}

}  // namespace tally::node
