#include "server/node/changelog_restorer.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "server/common/log.h"
#include "server/kafka/admin.h"
#include "server/kafka/errors.h"
#include "tally/records/v1/records.pb.h"

namespace tally::node {
namespace {

using kafka::MessagePtr;
using kafka::PartitionListPtr;

// Messages the fetch thread hands to the writer at once, and the most it keeps queued for it.
// Chunks make the hand-over cost (a lock and a wake-up) vanish per message; the bound keeps a
// slow disk from buffering the whole partition in memory (librdkafka then stops fetching too,
// at queued.max.messages.kbytes).
constexpr size_t kMessagesPerChunk = 2048;
constexpr size_t kMaxQueuedMessages = 4 * ChangelogRestorer::kRecordsPerTxn;

// The source_offset of a serialized ObjectRecord (0 if absent), read from the wire format: the
// shard stores the record as it is, so nothing else parses it. nullopt if the framing is broken.
std::optional<int64_t> SourceOffset(const void* data, size_t size) {
  constexpr uint32_t kSourceOffsetTag = records::v1::ObjectRecord::kSourceOffsetFieldNumber << 3;
  google::protobuf::io::CodedInputStream in(static_cast<const uint8_t*>(data),
                                            static_cast<int>(size));
  int64_t source_offset = 0;
  while (const uint32_t tag = in.ReadTag()) {
    uint64_t varint = 0;
    uint32_t length = 0;
    bool ok = false;
    switch (tag & 7) {
      case 0:  // varint
        ok = in.ReadVarint64(&varint);
        if (tag == kSourceOffsetTag) source_offset = static_cast<int64_t>(varint);
        break;
      case 1:  // fixed64
        ok = in.Skip(8);
        break;
      case 2:  // length-delimited
        ok = in.ReadVarint32(&length) && in.Skip(static_cast<int>(length));
        break;
      case 5:  // fixed32
        ok = in.Skip(4);
        break;
    }
    if (!ok) return std::nullopt;
  }
  if (!in.ConsumedEntireMessage()) return std::nullopt;
  return source_offset;
}

// What the fetch thread hands to the writer: records in offset order, then possibly the end.
struct Fetched {
  std::vector<MessagePtr> messages;
  bool end = false;        // The partition's end was reached; nothing follows.
  int64_t end_offset = 0;  // With `end`: the offset after the last record.
  absl::Status error;      // Fetching failed; nothing follows.
};

// A bounded queue from the fetch thread to the writer (the calling thread).
//
// std::mutex rather than absl::Mutex for the reason given in storage/internal/shard_impl.h:
// Debian's Abseil has no ThreadSanitizer annotations.
class FetchQueue {
 public:
  // Blocks while the queue is full. False (and `fetched` dropped) once the writer has stopped.
  bool Push(Fetched fetched) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return writer_stopped_ || queued_messages_ < kMaxQueuedMessages; });
    if (writer_stopped_) return false;
    queued_messages_ += fetched.messages.size();
    queue_.push_back(std::move(fetched));
    cv_.notify_all();
    return true;
  }

  // Blocks while the queue is empty.
  Fetched Pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !queue_.empty(); });
    Fetched fetched = std::move(queue_.front());
    queue_.pop_front();
    queued_messages_ -= fetched.messages.size();
    cv_.notify_all();
    return fetched;
  }

  // The writer gives up: Push returns false from now on, and what is queued is dropped.
  void StopWriter() {
    std::deque<Fetched> dropped;
    {
      std::lock_guard lock(mu_);
      writer_stopped_ = true;
      dropped.swap(queue_);
      queued_messages_ = 0;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  std::deque<Fetched> queue_;
  size_t queued_messages_ = 0;
  bool writer_stopped_ = false;
};

// The fetch thread: polls `rk` and hands what it gets to `queue` until the partition's end, an
// error, or the writer stopping.
void Fetch(rd_kafka_t* rk, const std::string& where, absl::Duration stall_timeout,
           FetchQueue& queue) {
  Fetched chunk;
  absl::Time last_progress = absl::Now();
  for (;;) {
    // Block only while there is nothing to hand over; otherwise hand over what there is as soon
    // as librdkafka's queue runs dry, so that the writer never waits on a half-filled chunk.
    MessagePtr msg(rd_kafka_consumer_poll(rk, chunk.messages.empty() ? 200 : 0));
    if (msg == nullptr) {
      if (!chunk.messages.empty()) {
        if (!queue.Push(std::exchange(chunk, Fetched()))) return;
        last_progress = absl::Now();
        continue;
      }
      if (absl::Now() - last_progress > stall_timeout) {
        chunk.error = absl::UnavailableError(
            absl::StrCat(where, ": no progress for ", absl::FormatDuration(stall_timeout)));
        queue.Push(std::move(chunk));
        return;
      }
      continue;
    }
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      chunk.end = true;
      chunk.end_offset = msg->offset;
      queue.Push(std::move(chunk));
      return;
    }
    if (msg->err) {
      absl::Status status = kafka::KafkaStatus(msg->err, absl::StrCat(where, ": fetch"));
      if (absl::IsUnavailable(status)) {
        log::Warn("restore fetch error, retrying", {{"error", status.ToString()}});
        last_progress = absl::Now();
        continue;
      }
      chunk.error = std::move(status);
      queue.Push(std::move(chunk));
      return;
    }
    chunk.messages.push_back(std::move(msg));
    if (chunk.messages.size() >= kMessagesPerChunk) {
      if (!queue.Push(std::exchange(chunk, Fetched()))) return;
      last_progress = absl::Now();
    }
  }
}

}  // namespace

ChangelogRestorer::ChangelogRestorer(kafka::Properties properties)
    : properties_(std::move(properties)) {}

absl::StatusOr<RestoreStats> ChangelogRestorer::Restore(storage::Shard& shard,
                                                        const std::string& topic, int32_t partition,
                                                        absl::Duration stall_timeout) {
  const absl::Time start_time = absl::Now();
  const std::string where = absl::StrCat("restore ", topic, "/", partition);
  auto reader = shard.NewReader();
  if (!reader.ok()) return reader.status();
  auto meta = (*reader)->GetMeta();
  if (!meta.ok()) return meta.status();
  reader->reset();  // do not pin a snapshot while writing

  RestoreStats stats;
  stats.start_offset = meta->changelog_offset();
  stats.end_offset = stats.start_offset;

  // librdkafka's defaults otherwise: its 1 MiB per partition fetch (max.partition.fetch.bytes)
  // keeps ~19k records of ~200 bytes coming per round trip, and measured against larger ones on
  // the 2-core bench machine it was the fastest: 8 MiB fetches slowed the same consumer from
  // ~1M to ~150k records/s.
  auto conf = kafka::BuildConf(properties_, {{"group.id", absl::StrCat("tally-restore-", topic)},
                                             {"enable.auto.commit", "false"},
                                             {"enable.auto.offset.store", "false"},
                                             {"isolation.level", "read_committed"},
                                             {"enable.partition.eof", "true"},
                                             {"auto.offset.reset", "earliest"}});
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
  log::Info(
      "restore started",
      {{"topic", topic}, {"partition", partition}, {"from", stats.start_offset}, {"to", end}});

  // An explicit start offset (never a logical one such as BEGINNING): librdkafka then fetches at
  // once instead of first looking the offset up, which cost ~0.5 s.
  PartitionListPtr assignment(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), partition)->offset =
      std::max<int64_t>(stats.start_offset, watermarks->first);
  if (rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment.get()); err) {
    return kafka::KafkaStatus(err, absl::StrCat(where, ": assign"));
  }

  // Fetching (librdkafka's poll, and the hand-over) and writing (LMDB) each take about one of
  // the machine's cores at full speed, so they run on two threads.
  FetchQueue queue;
  std::thread fetch_thread(Fetch, rk, std::cref(where), stall_timeout, std::ref(queue));

  records::v1::ShardMeta next_meta = *meta;
  int64_t in_batch = 0;
  int64_t max_source_offset = -1;
  bool committed = false;
  std::unique_ptr<storage::WriteBatch> batch;
  auto open_batch = [&]() -> absl::Status {
    auto fresh = shard.NewWriteBatch();
    if (!fresh.ok()) return fresh.status();
    batch = std::move(*fresh);
    // One Sync() at the end instead of an fsync per transaction; a crash before it costs only
    // a replay from the last checkpoint that reached the disk.
    batch->SkipSync();
    in_batch = 0;
    return absl::OkStatus();
  };
  auto commit = [&](int64_t next_offset) -> absl::Status {
    next_meta.set_changelog_offset(next_offset);
    if (max_source_offset >= next_meta.source_offset()) {
      next_meta.set_source_offset(max_source_offset);
    }
    batch->SetMeta(next_meta);
    committed = true;
    if (absl::Status s = batch->Commit(); !s.ok()) return s;
    stats.end_offset = next_offset;
    batch.reset();  // one open batch per shard at a time
    return open_batch();
  };
  // Applies one changelog record to the open batch.
  auto apply = [&](const rd_kafka_message_t& msg) -> absl::Status {
    const std::string_view key(static_cast<const char*>(msg.key), msg.key_len);
    if (msg.payload == nullptr) {
      batch->DeleteObject(key);
      return absl::OkStatus();
    }
    const std::optional<int64_t> source_offset = SourceOffset(msg.payload, msg.len);
    if (!source_offset.has_value() ||
        !batch
             ->PutObjectBytes(key, std::string_view(static_cast<const char*>(msg.payload), msg.len))
             .ok()) {
      // Only Tally writes changelogs; a record it cannot read means the topic is not ours or
      // was written by an incompatible version. Refuse rather than serve wrong state.
      return absl::DataLossError(
          absl::StrCat(where, ": unreadable changelog record at offset ", msg.offset));
    }
    max_source_offset = std::max(max_source_offset, *source_offset);
    return absl::OkStatus();
  };

  absl::Status status = open_batch();
  absl::Time last_log = absl::Now();
  for (bool done = false; status.ok() && !done;) {
    Fetched fetched = queue.Pop();
    for (const MessagePtr& msg : fetched.messages) {
      if (status = apply(*msg); !status.ok()) break;
      ++stats.records;
      if (++in_batch >= kRecordsPerTxn) {
        if (status = commit(msg->offset + 1); !status.ok()) break;
      }
    }
    if (!status.ok()) break;
    if (!fetched.error.ok()) {
      status = absl::Status(fetched.error.code(),
                            absl::StrCat(fetched.error.message(), " at offset ", stats.end_offset));
      break;
    }
    if (fetched.end) {
      status = commit(fetched.end_offset);
      done = true;
    }
    if (const absl::Time now = absl::Now(); now - last_log > absl::Seconds(2) && !done) {
      last_log = now;
      const double rate = stats.records / std::max(absl::ToDoubleSeconds(now - start_time), 1e-3);
      const int64_t at =
          fetched.messages.empty() ? stats.end_offset : fetched.messages.back()->offset + 1;
      log::Info("restore progress", {{"topic", topic},
                                     {"partition", partition},
                                     {"records", stats.records},
                                     {"records_per_s", static_cast<int64_t>(rate)},
                                     {"eta_s", static_cast<int64_t>((end - at) / rate)}});
    }
  }
  queue.StopWriter();  // unblocks the fetch thread if the writer gave up
  fetch_thread.join();
  batch.reset();
  rd_kafka_assign(rk, nullptr);
  rd_kafka_consumer_close(rk);
  if (committed) {
    if (absl::Status synced = shard.Sync(); !synced.ok() && status.ok()) status = synced;
  }
  if (!status.ok()) return status;

  stats.elapsed = absl::Now() - start_time;
  double secs = absl::ToDoubleSeconds(stats.elapsed);
  log::Info("restore done",
            {{"topic", topic},
             {"partition", partition},
             {"records", stats.records},
             {"seconds", secs},
             {"records_per_s", static_cast<int64_t>(stats.records / std::max(secs, 1e-3))}});
  return stats;
}

}  // namespace tally::node
