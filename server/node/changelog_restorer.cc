#include "server/node/changelog_restorer.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"
#include "server/kafka/admin.h"
#include "server/kafka/errors.h"
#include "tally/records/v1/records.pb.h"

namespace tally::node {
namespace {

using kafka::MessagePtr;
using kafka::PartitionListPtr;

// How far the fetch thread may run ahead of the writer, in staged bytes: a few transactions'
// worth, so that the writer never waits for a chunk that the fetch thread could have staged.
constexpr size_t kMaxQueuedBytes = size_t{64} << 20;

// What the fetch thread hands to the writer: the records of one transaction, checked and copied
// (so that their Kafka messages are freed at once), then possibly the end or an error.
struct Chunk {
  storage::StagedObjects staged;
  int64_t next_offset = 0;  // The changelog offset after the staged records (the checkpoint).
  bool end = false;         // The partition's end was reached; nothing follows.
  absl::Status error;       // Fetching failed; nothing follows.
};

// A bounded queue from the fetch thread to the writer (the calling thread).
//
// std::mutex rather than absl::Mutex for the reason given in storage/internal/shard_impl.h:
// Debian's Abseil has no ThreadSanitizer annotations.
class ChunkQueue {
 public:
  // Blocks while the queue is full. False (and `chunk` dropped) once the writer has stopped.
  bool Push(Chunk chunk) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return writer_stopped_ || queued_bytes_ < kMaxQueuedBytes; });
    if (writer_stopped_) return false;
    queued_bytes_ += chunk.staged.bytes();
    queue_.push_back(std::move(chunk));
    cv_.notify_all();
    return true;
  }

  // Blocks while the queue is empty.
  Chunk Pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !queue_.empty(); });
    Chunk chunk = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= chunk.staged.bytes();
    cv_.notify_all();
    return chunk;
  }

  // The writer gives up: Push returns false from now on, and what is queued is dropped.
  void StopWriter() {
    std::deque<Chunk> dropped;
    {
      std::lock_guard lock(mu_);
      writer_stopped_ = true;
      dropped.swap(queue_);
      queued_bytes_ = 0;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  std::deque<Chunk> queue_;
  size_t queued_bytes_ = 0;
  bool writer_stopped_ = false;
};

// The fetch thread: polls `rk` from `start_offset` and stages what it gets into chunks of
// `records_per_chunk` for `queue`, until the partition's end, an error, or the writer stopping.
// Every chunk ends where the next begins, so the writer's checkpoints stay a prefix of the
// changelog, and a failure hands over what was staged before it.
void Fetch(rd_kafka_t* rk, const std::string& where, int64_t start_offset,
           int64_t records_per_chunk, absl::Duration stall_timeout, ChunkQueue& queue) {
  Chunk chunk;
  chunk.next_offset = start_offset;
  absl::Time last_progress = absl::Now();
  bool progressed = false;  // A message came since last_progress (read the clock only when idle).
  auto fail = [&](absl::Status status) {
    chunk.error = std::move(status);
    queue.Push(std::move(chunk));
  };
  for (;;) {
    MessagePtr msg(rd_kafka_consumer_poll(rk, 200));
    if (msg == nullptr) {
      const absl::Time now = absl::Now();
      if (std::exchange(progressed, false)) {
        last_progress = now;
      } else if (now - last_progress > stall_timeout) {
        return fail(absl::UnavailableError(
            absl::StrCat(where, ": no progress for ", absl::FormatDuration(stall_timeout))));
      }
      continue;
    }
    progressed = true;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      chunk.end = true;
      chunk.next_offset = msg->offset;
      queue.Push(std::move(chunk));
      return;
    }
    if (msg->err) {
      absl::Status status = kafka::KafkaStatus(msg->err, absl::StrCat(where, ": fetch"));
      if (!absl::IsUnavailable(status)) return fail(std::move(status));
      log::Warn("restore fetch error, retrying", {{"error", status.ToString()}});
      continue;
    }
    const std::string_view key(static_cast<const char*>(msg->key), msg->key_len);
    if (msg->payload == nullptr) {
      chunk.staged.DeleteObject(key);
    } else if (!chunk.staged
                    .PutObjectBytes(
                        key, std::string_view(static_cast<const char*>(msg->payload), msg->len))
                    .ok()) {
      // Only Tally writes changelogs; a record it cannot read means the topic is not ours or
      // was written by an incompatible version. Refuse rather than serve wrong state.
      return fail(absl::DataLossError(
          absl::StrCat(where, ": unreadable changelog record at offset ", msg->offset)));
    }
    chunk.next_offset = msg->offset + 1;
    if (static_cast<int64_t>(chunk.staged.size()) >= records_per_chunk) {
      const int64_t next_offset = chunk.next_offset;
      if (!queue.Push(std::exchange(chunk, Chunk()))) return;
      chunk.next_offset = next_offset;
    }
  }
}

}  // namespace

// Consumer settings for a bulk read, each measured on the 2-core bench machine:
// - queued.min.messages / queued.max.messages.kbytes: librdkafka 2.0 stops fetching when its
//   queue holds this much and, nothing waking it, resumes only on its broker thread's next
//   timed wake-up, up to 1 s later (librdkafka issue #2879; fetch.queue.backoff.ms came in 2.2).
//   With the default 100k messages, fetching stalled ~0.9 s after every ~350k records; the
//   queue must hold more than a second of what the fetch thread drains (~1M records/s).
// - fetch.wait.max.ms: the broker holds the fetch at the partition's end this long before
//   answering that there is nothing more, which the restore then waits for (default 500 ms).
// - max.partition.fetch.bytes stays at 1 MiB: 8 MiB fetches slowed a bare consumer from ~1M to
//   ~150k records/s.
kafka::Properties ChangelogRestorer::FetchProperties() {
  return {{"isolation.level", "read_committed"},
          {"enable.partition.eof", "true"},
          {"queued.min.messages", "1000000"},
          {"queued.max.messages.kbytes", "262144"},
          {"fetch.wait.max.ms", "10"}};
}

ChangelogRestorer::ChangelogRestorer(kafka::Properties properties)
    : properties_(std::move(properties)) {}

absl::StatusOr<RestoreStats> ChangelogRestorer::Restore(storage::Shard& shard,
                                                        const std::string& topic, int32_t partition,
                                                        absl::Duration stall_timeout,
                                                        const std::function<void(int64_t)>& progress) {
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

  kafka::Properties settings = FetchProperties();
  settings["group.id"] = absl::StrCat("tally-restore-", topic);
  settings["enable.auto.commit"] = "false";
  settings["enable.auto.offset.store"] = "false";
  settings["auto.offset.reset"] = "earliest";
  auto conf = kafka::BuildConf(properties_, settings);
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

  // Two threads: the fetch thread polls librdkafka and stages records (checks their framing and
  // copies them), the calling thread sorts them and writes LMDB.
  ChunkQueue queue;
  const int64_t start_offset = assignment->elems[0].offset;
  std::thread fetch_thread(Fetch, rk, std::cref(where), start_offset, kRecordsPerTxn, stall_timeout,
                           std::ref(queue));

  records::v1::ShardMeta next_meta = *meta;
  bool committed = false;
  absl::Status status;
  absl::Time last_log = absl::Now();
  for (bool done = false; status.ok() && !done;) {
    Chunk chunk = queue.Pop();
    done = chunk.end || !chunk.error.ok();
    const int64_t records = static_cast<int64_t>(chunk.staged.size());
    if (records > 0 || chunk.end) {
      auto batch = shard.NewWriteBatch();
      if (!batch.ok()) {
        status = batch.status();
        break;
      }
      // One Sync() at the end instead of an fsync per transaction; a crash before it costs only
      // a replay from the last checkpoint that reached the disk.
      (*batch)->SkipSync();
      next_meta.set_changelog_offset(chunk.next_offset);
      next_meta.set_source_offset(
          std::max(next_meta.source_offset(), chunk.staged.max_source_offset()));
      // Where the restored states stand in the changes stream (WatchState's snapshots).
      next_meta.set_changes_offset(
          std::max(next_meta.changes_offset(), chunk.staged.max_changes_offset()));
      (*batch)->PutStaged(std::move(chunk.staged));
      (*batch)->SetMeta(next_meta);
      committed = true;
      if (status = (*batch)->Commit(); !status.ok()) break;
      stats.records += records;
      stats.end_offset = chunk.next_offset;
      if (progress) progress(next_meta.source_offset());
    }
    if (!chunk.error.ok()) {
      status = absl::Status(chunk.error.code(),
                            absl::StrCat(chunk.error.message(), " at offset ", stats.end_offset));
      break;
    }
    if (const absl::Time now = absl::Now(); now - last_log > absl::Seconds(2) && !done) {
      last_log = now;
      const double rate = stats.records / std::max(absl::ToDoubleSeconds(now - start_time), 1e-3);
      log::Info("restore progress",
                {{"topic", topic},
                 {"partition", partition},
                 {"records", stats.records},
                 {"records_per_s", static_cast<int64_t>(rate)},
                 {"eta_s", static_cast<int64_t>((end - stats.end_offset) / rate)}});
    }
  }
  queue.StopWriter();  // unblocks the fetch thread if the writer gave up
  fetch_thread.join();
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
