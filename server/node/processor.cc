#include "server/node/processor.h"

#include <librdkafka/rdkafka.h>

#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/kafka/admin.h"
#include "server/kafka/config.h"
#include "server/kafka/errors.h"
#include "server/node/changelog_restorer.h"
#include "server/processor/object_update.h"
#include "server/processor/record_validation.h"
#include "server/processor/reducer.h"

namespace tally::node {
namespace {

using kafka::MessagePtr;
using kafka::PartitionListPtr;
using kafka::TopicPtr;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

kafka::Properties BaseProperties(const config::v1::Config& config) {
  return config::KafkaProperties(config);
}

// Votes expired per shard and expiry pass; the rest wait for the next pass.
constexpr size_t kMaxExpiredPerPass = 10000;
// How much longer than the transaction timeout a new owner waits for a stable committed offset.
constexpr int64_t kStableOffsetMarginMs = 30000;

// Times the phases of one batch.
class PhaseClock {
 public:
  // Adds the time since the previous End (or since construction) to `phase`.
  void End(BatchPhase phase) {
    const absl::Time now = absl::Now();
    time_[static_cast<int>(phase)] += now - last_;
    last_ = now;
  }
  const std::array<absl::Duration, kBatchPhases>& time() const { return time_; }

 private:
  absl::Time last_ = absl::Now();
  std::array<absl::Duration, kBatchPhases> time_{};
};

}  // namespace

// One Kafka session: a consumer-group member and a transactional producer, and the shards of the
// partitions assigned to it. Any error ends the session; Processor::Run starts a new one.
class Processor::Session {
 public:
  Session(const config::v1::Config& config, ShardRegistry& registry, ShardFiles& files,
          StandbyReplicator& standbys, BatchStatsSink& batch_stats,
          const std::atomic<bool>& stop);
  ~Session();

  // Processes until stop or an error (returned).
  absl::Status Run();

 private:
  struct Scenario {
    const config::v1::Scenario* config;
    std::unique_ptr<processor::Reducer> reducer;
    std::string reports_topic;
    TopicPtr changelog, changes, dlq;
  };
  // One assigned partition.
  struct Task {
    Scenario* scenario;
    int32_t partition;
    std::shared_ptr<storage::Shard> shard;
    records::v1::ShardMeta meta;
    int64_t delivered_changelog_offset = -1;  // written by the delivery callback
    int64_t delivered_changes_offset = -1;    // written by the delivery callback
  };
  // A task's work within one transaction.
  struct Pending {
    std::unique_ptr<storage::WriteBatch> batch;
    absl::flat_hash_set<std::string> dirty;  // objects whose changelog record is due
    int64_t next_source_offset = -1;         // -1: no record consumed
    bool has_events = false;                 // change events were produced
  };

  absl::Status Init();
  std::vector<MessagePtr> Collect();
  absl::Status ProcessBatch(const std::vector<MessagePtr>& messages, bool expire);
  absl::Status ApplyUpdate(Task& task, Pending& pending, const std::string& key,
                           processor::ObjectUpdate update);
  absl::Status SendToDeadLetter(Task& task, const rd_kafka_message_t& msg,
                                const std::string& reason);
  absl::Status Produce(rd_kafka_topic_t* topic, int32_t partition, const std::string& key,
                       const std::string* value, void* opaque);
  // Aborts the open transaction after `status` (returned), and sets batch_aborted_.
  absl::Status EndTransaction(absl::Status status);
  // Moves the consumer back to the offsets the shards hold (after an aborted batch).
  absl::Status Rewind();
  // The reports partition's end offset as the consumer last saw it; -1 if unknown.
  int64_t EndOffset(const Task& task) const;
  // Next changes-topic offset of the task's partition after what was delivered so far.
  static int64_t ChangesOffset(const Task& task) {
    return std::max(task.meta.changes_offset(), task.delivered_changes_offset + 1);
  }
  // Tells the registry every task's applied and end offsets (lag for routers and DescribeCluster).
  void PublishProgress();

  void OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions);
  // Restores the partition's shard; returns the reports offset to consume from.
  absl::StatusOr<int64_t> Assign(const std::string& topic, int32_t partition);
  // The group's committed offset of a reports partition (-1: none), once no transaction that
  // commits offsets for it is open. Calls `waiting` about every second while it waits.
  absl::StatusOr<int64_t> StableCommittedOffset(const std::string& topic, int32_t partition,
                                                const std::function<void()>& waiting);
  void Revoke(const std::string& topic, int32_t partition);
  static void RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t* partitions, void* opaque);
  static void DeliveryCallback(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque);

  static std::string TaskKey(const std::string& topic, int32_t partition) {
    return absl::StrCat(topic, "/", partition);
  }

  // Constant after construction.
  const config::v1::Config& config_;
  ShardRegistry& registry_;
  ShardFiles& files_;
  StandbyReplicator& standbys_;
  BatchStatsSink& batch_stats_;
  const std::atomic<bool>& stop_;
  const kafka::Properties properties_;

  // Owned by the session's thread (callbacks run on it, inside poll and flush).
  kafka::HandlePtr consumer_;
  kafka::HandlePtr producer_;
  absl::flat_hash_map<std::string, Scenario> scenarios_;  // by reports topic
  absl::flat_hash_map<std::string, Task> tasks_;          // by TaskKey
  absl::Status callback_error_;  // an error inside a rebalance callback ends the session
  absl::Status delivery_error_;  // first failed delivery of the current transaction
  bool batch_aborted_ = false;   // the last batch failed with an abortable error and was aborted
  int64_t next_expiry_ms_ = 0;
};

Processor::Session::Session(const config::v1::Config& config, ShardRegistry& registry,
                            ShardFiles& files, StandbyReplicator& standbys,
                            BatchStatsSink& batch_stats, const std::atomic<bool>& stop)
    : config_(config),
      registry_(registry),
      files_(files),
      standbys_(standbys),
      batch_stats_(batch_stats),
      stop_(stop),
      properties_(BaseProperties(config)) {}

Processor::Session::~Session() {
  if (consumer_ != nullptr) {
    // Static membership: closing does not leave the group, so a restart within the session
    // timeout gets the same partitions back without a rebalance.
    rd_kafka_consumer_close(consumer_.get());
  }
  // The shards stay readable with max_lag (as standbys) until others take the partitions over.
  for (auto& [key, task] : tasks_) {
    standbys_.Adopt(task.scenario->config->name(), task.partition, task.shard, task.meta);
  }
  tasks_.clear();
  for (auto& [topic, scenario] : scenarios_) {
    scenario.changelog.reset();
    scenario.changes.reset();
    scenario.dlq.reset();
  }
  if (producer_ != nullptr) rd_kafka_flush(producer_.get(), 5000);
}

absl::Status Processor::Session::Init() {
  const std::string& node_id = config_.node().node_id();
  auto producer_conf = kafka::BuildConf(
      properties_, {{"transactional.id", absl::StrCat(config_.app_id(), "-", node_id)},
                    {"enable.idempotence", "true"},
                    {"acks", "all"},
                    {"linger.ms", "5"},
                    {"batch.num.messages", "10000"},
                    {"queue.buffering.max.messages", "1000000"},
                    {"transaction.timeout.ms",
                     absl::StrCat(config::DurationMs(config_.node().transaction_timeout()))},
                    {"client.id", absl::StrCat("tally-", node_id, "-producer")}});
  if (!producer_conf.ok()) return producer_conf.status();
  rd_kafka_conf_set_dr_msg_cb(producer_conf->get(), &Session::DeliveryCallback);
  rd_kafka_conf_set_opaque(producer_conf->get(), this);
  auto producer = kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*producer_conf));
  if (!producer.ok()) return producer.status();
  producer_ = std::move(*producer);
  // Fences any older producer of this node and aborts its open transaction.
  if (absl::Status s = kafka::KafkaStatus(rd_kafka_init_transactions(producer_.get(), 60000),
                                          "init transactions");
      !s.ok()) {
    return s;
  }

  for (const config::v1::Scenario& s : config_.scenarios()) {
    Scenario& scenario = scenarios_[config::ReportsTopic(config_, s.name())];
    scenario.config = &s;
    auto reducer = processor::NewReducer(s.reducer());
    if (!reducer.ok()) return reducer.status();
    scenario.reducer = std::move(*reducer);
    scenario.reports_topic = config::ReportsTopic(config_, s.name());
    scenario.changelog.reset(rd_kafka_topic_new(
        producer_.get(), config::ChangelogTopic(config_, s.name()).c_str(), nullptr));
    scenario.changes.reset(rd_kafka_topic_new(
        producer_.get(), config::ChangesTopic(config_, s.name()).c_str(), nullptr));
    scenario.dlq.reset(rd_kafka_topic_new(
        producer_.get(), config::DeadLetterTopic(config_, s.name()).c_str(), nullptr));
  }

  auto consumer_conf = kafka::BuildConf(
      properties_,
      {{"group.id", config_.app_id()},
       {"group.instance.id", node_id},
       {"partition.assignment.strategy", "cooperative-sticky"},
       {"session.timeout.ms", absl::StrCat(config::DurationMs(config_.node().session_timeout()))},
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       {"isolation.level", "read_committed"},
       {"auto.offset.reset", "earliest"},
       {"client.id", absl::StrCat("tally-", node_id, "-consumer")}});
  if (!consumer_conf.ok()) return consumer_conf.status();
  rd_kafka_conf_set_rebalance_cb(consumer_conf->get(), &Session::RebalanceCallback);
  rd_kafka_conf_set_opaque(consumer_conf->get(), this);
  auto consumer = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*consumer_conf));
  if (!consumer.ok()) return consumer.status();
  consumer_ = std::move(*consumer);
  rd_kafka_poll_set_consumer(consumer_.get());

  PartitionListPtr topics(rd_kafka_topic_partition_list_new(scenarios_.size()));
  for (const auto& [topic, scenario] : scenarios_) {
    rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer_.get(), topics.get()); err) {
    return kafka::KafkaStatus(err, "subscribe to the reports topics");
  }
  next_expiry_ms_ = NowMs() + config::DurationMs(config_.node().expiry_interval());
  return absl::OkStatus();
}

absl::Status Processor::Session::Run() {
  if (absl::Status s = Init(); !s.ok()) return s;
  while (!stop_.load()) {
    std::vector<MessagePtr> messages = Collect();
    if (!callback_error_.ok()) return callback_error_;
    if (rd_kafka_fatal_error(consumer_.get(), nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::FailedPreconditionError("the consumer hit a fatal error");
    }
    bool expire = NowMs() >= next_expiry_ms_;
    if (messages.empty() && !expire) {
      PublishProgress();  // idle: the end offsets may still have moved (e.g. after a restore)
      continue;
    }
    if (expire) next_expiry_ms_ = NowMs() + config::DurationMs(config_.node().expiry_interval());
    absl::Status status = ProcessBatch(messages, expire);
    if (status.ok()) continue;
    // An abortable error (ILLEGAL_GENERATION when a rebalance ended the generation the
    // transaction began in, a timeout, ...) was aborted as Kafka asks: the shards did not move,
    // so rewinding the consumer to what they hold retries the batch. Ending the session instead
    // would revoke and restore every partition of the node, on every rebalance of the group.
    if (!batch_aborted_ || rd_kafka_fatal_error(producer_.get(), nullptr, 0) != 0) return status;
    log::Info("transaction aborted; retrying its records", {{"error", status.ToString()}});
    if (absl::Status s = Rewind(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Processor::Session::Rewind() {
  PartitionListPtr positions(rd_kafka_topic_partition_list_new(static_cast<int>(tasks_.size())));
  for (const auto& [key, task] : tasks_) {
    rd_kafka_topic_partition_list_add(positions.get(), task.scenario->reports_topic.c_str(),
                                      task.partition)
        ->offset = task.meta.source_offset();
  }
  if (positions->cnt == 0) return absl::OkStatus();
  if (absl::Status s = kafka::KafkaStatus(
          rd_kafka_seek_partitions(consumer_.get(), positions.get(), 30000), "rewind");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < positions->cnt; ++i) {
    if (positions->elems[i].err) {
      return kafka::KafkaStatus(positions->elems[i].err,
                                absl::StrCat("rewind ", positions->elems[i].topic, "/",
                                             positions->elems[i].partition));
    }
  }
  return absl::OkStatus();
}

std::vector<MessagePtr> Processor::Session::Collect() {
  std::vector<MessagePtr> messages;
  const size_t max = static_cast<size_t>(config_.node().max_batch_records());
  // Wait for the first record at most until the next expiry is due (and 100 ms, to notice stop).
  int wait_ms = static_cast<int>(std::clamp<int64_t>(next_expiry_ms_ - NowMs(), 0, 100));
  MessagePtr first(rd_kafka_consumer_poll(consumer_.get(), wait_ms));
  for (MessagePtr msg = std::move(first); msg != nullptr;
       msg.reset(messages.size() < max ? rd_kafka_consumer_poll(consumer_.get(), 0) : nullptr)) {
    if (msg->err) {
      log::Debug("consumer event", {{"error", rd_kafka_err2str(msg->err)}});
      continue;
    }
    messages.push_back(std::move(msg));
  }
  return messages;
}

absl::Status Processor::Session::ProcessBatch(const std::vector<MessagePtr>& messages,
                                              bool expire) {
  PhaseClock clock;
  uint64_t records = 0;
  const int64_t now_ms = NowMs();
  if (absl::Status s =
          kafka::KafkaStatus(rd_kafka_begin_transaction(producer_.get()), "begin transaction");
      !s.ok()) {
    return s;
  }
  delivery_error_ = absl::OkStatus();
  batch_aborted_ = false;
  absl::flat_hash_map<Task*, Pending> pending;
  auto pending_for = [&](Task& task) -> absl::StatusOr<Pending*> {
    Pending& p = pending[&task];
    if (p.batch == nullptr) {
      auto batch = task.shard->NewWriteBatch();
      if (!batch.ok()) return batch.status();
      p.batch = std::move(*batch);
    }
    return &p;
  };

  for (const MessagePtr& msg : messages) {
    auto it = tasks_.find(TaskKey(rd_kafka_topic_name(msg->rkt), msg->partition));
    if (it == tasks_.end()) continue;  // revoked while the batch was collected
    ++records;
    Task& task = it->second;
    auto p = pending_for(task);
    if (!p.ok()) return EndTransaction(p.status());
    (*p)->next_source_offset = msg->offset + 1;
    std::string key(static_cast<const char*>(msg->key), msg->key_len);
    records::v1::ReportRecord record;
    if (msg->payload == nullptr ||
        !record.ParseFromArray(msg->payload, static_cast<int>(msg->len))) {
      if (absl::Status s =
              SendToDeadLetter(task, *msg, "value is not a tally.records.v1.ReportRecord");
          !s.ok()) {
        return EndTransaction(s);
      }
      continue;
    }
    if (absl::Status valid =
            processor::ValidateReportRecord(record, task.scenario->config->name(), key);
        !valid.ok()) {
      if (absl::Status s = SendToDeadLetter(task, *msg, std::string(valid.message())); !s.ok()) {
        return EndTransaction(s);
      }
      continue;
    }
    auto current = (*p)->batch->GetObject(key);
    if (!current.ok()) return EndTransaction(current.status());
    processor::ObjectUpdate update =
        processor::ApplyRecord(*task.scenario->reducer, *current, record, now_ms);
    if (absl::Status s = ApplyUpdate(task, **p, key, std::move(update)); !s.ok()) {
      return EndTransaction(s);
    }
  }

  if (expire) {
    for (auto& [task_key, task] : tasks_) {
      std::vector<std::string> expired;
      {
        auto reader = task.shard->NewReader();
        if (!reader.ok()) return EndTransaction(reader.status());
        auto keys = (*reader)->ExpiredObjects(now_ms, kMaxExpiredPerPass);
        if (!keys.ok()) return EndTransaction(keys.status());
        expired = std::move(*keys);
      }  // the reader must not outlive this scope: a commit may need to grow the map
      if (expired.empty()) continue;
      auto p = pending_for(task);
      if (!p.ok()) return EndTransaction(p.status());
      for (const std::string& key : expired) {
        auto current = (*p)->batch->GetObject(key);
        if (!current.ok()) return EndTransaction(current.status());
        if (!current->has_value()) continue;
        processor::ObjectUpdate update = processor::ExpireVotes(
            *task.scenario->reducer, task.scenario->config->name(), key, **current, now_ms);
        if (absl::Status s = ApplyUpdate(task, **p, key, std::move(update)); !s.ok()) {
          return EndTransaction(s);
        }
      }
    }
  }

  clock.End(BatchPhase::kApply);
  // The change events' offsets go into the changelog records (ObjectRecord.changes_offset), so
  // wait for their delivery first. Batches without events skip the wait.
  for (auto& [task, p] : pending) {
    if (p.has_events) {
      rd_kafka_flush(producer_.get(), 30000);
      if (!delivery_error_.ok()) return EndTransaction(delivery_error_);
      break;
    }
  }
  clock.End(BatchPhase::kEventDelivery);
  // One changelog record per changed object, carrying its final data in this batch: a restore
  // then replays one record per object, and repeated reports of one object within a batch cost
  // one Kafka write.
  PartitionListPtr offsets(rd_kafka_topic_partition_list_new(static_cast<int>(pending.size())));
  for (auto& [task, p] : pending) {
    // The offsets every changelog record of the task carries. Fields appended to a serialized
    // message are set in it, so a record is the object's value in the batch with these after it.
    records::v1::ObjectRecord record_offsets;
    record_offsets.set_source_offset(p.next_source_offset >= 0 ? p.next_source_offset
                                                               : task->meta.source_offset());
    record_offsets.set_changes_offset(ChangesOffset(*task));
    const std::string offset_fields = record_offsets.SerializeAsString();
    for (const std::string& key : p.dirty) {
      auto value = p.batch->GetObjectBytes(key);
      if (!value.ok()) return EndTransaction(value.status());
      if (value->has_value()) (*value)->append(offset_fields);
      if (absl::Status s =
              Produce(task->scenario->changelog.get(), task->partition, key,
                      value->has_value() ? &**value : nullptr, &task->delivered_changelog_offset);
          !s.ok()) {
        return EndTransaction(s);
      }
    }
    if (p.next_source_offset >= 0) {
      rd_kafka_topic_partition_list_add(offsets.get(), task->scenario->reports_topic.c_str(),
                                        task->partition)
          ->offset = p.next_source_offset;
    }
  }
  clock.End(BatchPhase::kChangelog);
  if (offsets->cnt > 0) {
    // The group metadata (member id, generation) changes with every rebalance: take it fresh,
    // or the broker fences the offsets as coming from a stale member.
    rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer_.get());
    absl::Status s = kafka::KafkaStatus(
        rd_kafka_send_offsets_to_transaction(producer_.get(), offsets.get(), group, 30000),
        "send offsets to transaction");
    rd_kafka_consumer_group_metadata_destroy(group);
    if (!s.ok()) return EndTransaction(s);
  }
  clock.End(BatchPhase::kSendOffsets);
  // Flush serves the delivery callbacks, which record the changelog offsets and any failure.
  rd_kafka_flush(producer_.get(), 30000);
  if (!delivery_error_.ok()) return EndTransaction(delivery_error_);
  clock.End(BatchPhase::kFlush);
  if (absl::Status s = kafka::KafkaStatus(rd_kafka_commit_transaction(producer_.get(), 30000),
                                          "commit transaction");
      !s.ok()) {
    return EndTransaction(s);
  }
  clock.End(BatchPhase::kCommitTransaction);

  // The transaction is committed: only now may the shards move forward. Each shard is its own
  // LMDB environment and each commit ends in its own fsync, so they commit in parallel: a batch
  // that touched N partitions waits for the slowest fsync, not for N of them in a row (in the
  // ingest benchmark, six partitions on one node, the sequential fsyncs were the largest part
  // of the batch and of report-to-visible latency).
  // (A thread per shard and batch costs tens of microseconds against a commit's fsync of ~10 ms.)
  struct ShardCommit {
    Task* task;
    storage::WriteBatch* batch;
    records::v1::ShardMeta meta;
    absl::Status status;
  };
  std::vector<ShardCommit> commits;
  commits.reserve(pending.size());
  for (auto& [task, p] : pending) {
    records::v1::ShardMeta meta = task->meta;
    if (p.next_source_offset >= 0) meta.set_source_offset(p.next_source_offset);
    if (task->delivered_changelog_offset >= meta.changelog_offset()) {
      meta.set_changelog_offset(task->delivered_changelog_offset + 1);
    }
    meta.set_changes_offset(ChangesOffset(*task));
    p.batch->SetMeta(meta);
    commits.push_back({task, p.batch.get(), std::move(meta), absl::OkStatus()});
  }
  std::vector<std::thread> committers;
  for (size_t i = 1; i < commits.size(); ++i) {
    committers.emplace_back([&c = commits[i]] { c.status = c.batch->Commit(); });
  }
  if (!commits.empty()) commits[0].status = commits[0].batch->Commit();  // on this thread
  for (std::thread& committer : committers) committer.join();
  clock.End(BatchPhase::kCommitShards);
  // Counted once Kafka committed: its records are never consumed again, even if a shard's commit
  // failed (that shard restores them from the changelog).
  batch_stats_.Add(records, clock.time());
  absl::Status first_error;
  for (ShardCommit& c : commits) {
    // A shard that failed: Kafka has the batch, the shard does not; the next session restores
    // it from the changelog. The shards that did commit move forward.
    first_error.Update(c.status);
    if (!c.status.ok()) continue;
    c.task->meta = std::move(c.meta);
    registry_.SetProgress(c.task->scenario->config->name(), c.task->partition,
                          c.task->meta.source_offset(), EndOffset(*c.task));
  }
  return first_error;
}

int64_t Processor::Session::EndOffset(const Task& task) const {
  // The consumer's cached high watermark from its last fetch: no request to the broker.
  int64_t low = 0, high = -1;
  if (rd_kafka_get_watermark_offsets(consumer_.get(), task.scenario->reports_topic.c_str(),
                                     task.partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      high < 0) {
    return -1;
  }
  return high;
}

void Processor::Session::PublishProgress() {
  for (const auto& [key, task] : tasks_) {
    registry_.SetProgress(task.scenario->config->name(), task.partition, task.meta.source_offset(),
                          EndOffset(task));
  }
}

absl::Status Processor::Session::ApplyUpdate(Task& task, Pending& pending, const std::string& key,
                                             processor::ObjectUpdate update) {
  if (update.event.has_value()) {
    std::string value = update.event->SerializeAsString();
    if (absl::Status s = Produce(task.scenario->changes.get(), task.partition, key, &value,
                                 &task.delivered_changes_offset);
        !s.ok()) {
      return s;
    }
    pending.has_events = true;
  }
  if (!update.changed) return absl::OkStatus();
  if (update.deleted) {
    pending.batch->DeleteObject(key);
  } else {
    pending.batch->PutObject(key, std::move(update.data));
  }
  pending.dirty.insert(key);
  return absl::OkStatus();
}

absl::Status Processor::Session::SendToDeadLetter(Task& task, const rd_kafka_message_t& msg,
                                                  const std::string& reason) {
  records::v1::DeadLetter letter;
  letter.set_topic(rd_kafka_topic_name(msg.rkt));
  letter.set_partition(msg.partition);
  letter.set_offset(msg.offset);
  if (msg.key != nullptr) letter.set_key(msg.key, msg.key_len);
  if (msg.payload != nullptr) letter.set_value(msg.payload, msg.len);
  letter.set_reason(reason);
  letter.set_time_ms(NowMs());
  log::Warn("record sent to the dead-letter topic", {{"topic", letter.topic()},
                                                     {"partition", msg.partition},
                                                     {"offset", msg.offset},
                                                     {"reason", reason}});
  std::string value = letter.SerializeAsString();
  return Produce(task.scenario->dlq.get(), task.partition, letter.key(), &value, nullptr);
}

absl::Status Processor::Session::Produce(rd_kafka_topic_t* topic, int32_t partition,
                                         const std::string& key, const std::string* value,
                                         void* opaque) {
  while (true) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_RKT(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr,
                         value ? value->size() : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer_.get(), 10);  // serve deliveries to make room
      continue;
    }
    return kafka::KafkaStatus(err, absl::StrCat("produce to ", rd_kafka_topic_name(topic)));
  }
}

absl::Status Processor::Session::EndTransaction(absl::Status status) {
  log::Warn("aborting transaction", {{"error", status.ToString()}});
  absl::Status abort =
      kafka::KafkaStatus(rd_kafka_abort_transaction(producer_.get(), 30000), "abort transaction");
  if (!abort.ok()) log::Warn("abort failed", {{"error", abort.ToString()}});
  // The consumer's position is past the aborted records and the WriteBatches are dropped: Run()
  // rewinds the consumer if the error was one Kafka asks to abort for (ABORTED) and the abort
  // went through, else the session ends and the next one resumes from the committed offsets.
  batch_aborted_ = abort.ok() && absl::IsAborted(status);
  return status;
}

void Processor::Session::DeliveryCallback(rd_kafka_t*, const rd_kafka_message_t* msg,
                                          void* opaque) {
  auto* self = static_cast<Session*>(opaque);
  if (msg->err) {
    if (self->delivery_error_.ok()) {
      self->delivery_error_ =
          kafka::KafkaStatus(msg->err, absl::StrCat("deliver to ", rd_kafka_topic_name(msg->rkt)));
    }
    return;
  }
  if (msg->_private != nullptr) {
    auto* offset = static_cast<int64_t*>(msg->_private);
    *offset = std::max(*offset, msg->offset);
  }
}

void Processor::Session::RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                           rd_kafka_topic_partition_list_t* partitions,
                                           void* opaque) {
  static_cast<Session*>(opaque)->OnRebalance(err, partitions);
  (void)rk;
}

void Processor::Session::OnRebalance(rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* partitions) {
  rd_kafka_t* rk = consumer_.get();
  // NULL once the consumer has left the group (inside rd_kafka_consumer_close).
  const char* protocol = rd_kafka_rebalance_protocol(rk);
  const bool cooperative = protocol != nullptr && std::string_view(protocol) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    // Restore before assigning: no record of a partition is fetched until its shard is current.
    // Each partition starts where its shard stands (see Assign), not at the committed offset.
    for (int i = 0; i < partitions->cnt; ++i) {
      if (!callback_error_.ok()) break;
      auto start = Assign(partitions->elems[i].topic, partitions->elems[i].partition);
      if (!start.ok()) {
        callback_error_ = start.status();
        break;
      }
      partitions->elems[i].offset = *start;
    }
    rd_kafka_error_t* error = cooperative ? rd_kafka_incremental_assign(rk, partitions) : nullptr;
    if (!cooperative) rd_kafka_assign(rk, partitions);
    if (absl::Status s = kafka::KafkaStatus(error, "incremental assign"); !s.ok()) {
      callback_error_.Update(s);
    }
    return;
  }
  for (int i = 0; i < partitions->cnt; ++i) {
    Revoke(partitions->elems[i].topic, partitions->elems[i].partition);
  }
  if (cooperative) {
    if (absl::Status s = kafka::KafkaStatus(rd_kafka_incremental_unassign(rk, partitions),
                                            "incremental unassign");
        !s.ok()) {
      callback_error_.Update(s);
    }
  } else {
    rd_kafka_assign(rk, nullptr);
  }
}

absl::StatusOr<int64_t> Processor::Session::StableCommittedOffset(
    const std::string& topic, int32_t partition, const std::function<void()>& waiting) {
  PartitionListPtr committed(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(committed.get(), topic.c_str(), partition);
  // A read_committed consumer asks for stable offsets (KIP-447): the broker answers
  // UNSTABLE_OFFSET_COMMIT, and librdkafka asks again, while a transaction that sent offsets for
  // the partition is open. The previous owner's last transaction ends within its timeout (the
  // coordinator aborts it then), so waiting longer than that is an error. Asked a second at a
  // time, so that `waiting` runs in between.
  const absl::Time deadline =
      absl::Now() + absl::Milliseconds(config::DurationMs(config_.node().transaction_timeout()) +
                                       kStableOffsetMarginMs);
  rd_kafka_resp_err_t err;
  while ((err = rd_kafka_committed(consumer_.get(), committed.get(), 1000)) ==
             RD_KAFKA_RESP_ERR__TIMED_OUT &&
         absl::Now() < deadline) {
    waiting();
  }
  if (absl::Status s =
          kafka::KafkaStatus(err, absl::StrCat("committed offset of ", topic, "/", partition));
      !s.ok()) {
    return s;
  }
  const rd_kafka_topic_partition_t& elem = committed->elems[0];
  if (elem.err) {
    return kafka::KafkaStatus(elem.err,
                              absl::StrCat("committed offset of ", topic, "/", partition));
  }
  return elem.offset >= 0 ? elem.offset : -1;
}

absl::StatusOr<int64_t> Processor::Session::Assign(const std::string& topic, int32_t partition) {
  auto scenario_it = scenarios_.find(topic);
  if (scenario_it == scenarios_.end()) {
    return absl::InternalError(absl::StrCat("assigned a topic not subscribed to: ", topic));
  }
  Scenario& scenario = scenario_it->second;
  const std::string& name = scenario.config->name();
  // A standby copy of the partition on this node stops here and becomes the active one: the
  // restore below then replays only what the standby had not applied.
  standbys_.Claim(name, partition);
  auto shard = files_.Open(name, partition);
  if (!shard.ok()) {
    standbys_.Release(name, partition);
    return shard.status();
  }
  std::shared_ptr<storage::Shard> shared = std::move(*shard);
  // A standby copy claimed above stays a standby in the registry, answering lag-bounded reads
  // with its lag, until the restore starts: the wait below for the previous owner's transaction
  // can last the transaction timeout, and the claimed copy may be the partition's only other one
  // (with standby_replicas: 1 it is), so its max_lag reads failed for all that time.
  const std::optional<ShardInfo> claimed = registry_.Get(name, partition);
  const bool warm = claimed.has_value() && claimed->role == ShardRole::kStandby &&
                    claimed->shard == shared;
  if (!warm) registry_.Put(ShardInfo{name, partition, ShardRole::kRestoring, shared});
  auto fail = [&](absl::Status status) {
    registry_.Remove(name, partition);  // closes the shard, so the next session can open it
    standbys_.Release(name, partition);
    return status;
  };

  // Restore progress for DescribeCluster: the reports offset the restored records reach, against
  // the reports partition's end.
  int64_t low = 0, end = -1;
  if (rd_kafka_query_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &end,
                                       5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    end = -1;
  }
  log::Info("partition taken", {{"scenario", name}, {"partition", partition}});
  // The previous owner's last transaction must be over before the restore reads the changelog:
  // a transaction still open then is past the changelog's last stable offset, so the restore would
  // miss its records, and once it commits its offsets, consuming from them would skip its reports
  // for good (seen when a broker restart delayed the old owner's commit past the rebalance).
  // Meanwhile a claimed standby's lag counts the reports that keep arriving.
  auto refresh_lag = [&] {
    if (!warm) return;
    int64_t low = 0, high = -1;
    if (rd_kafka_query_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &high,
                                         1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      registry_.SetProgress(name, partition, claimed->applied_offset, high);
    }
  };
  if (end >= 0 && warm) registry_.SetProgress(name, partition, claimed->applied_offset, end);
  auto committed = StableCommittedOffset(topic, partition, refresh_lag);
  if (!committed.ok()) return fail(committed.status());
  if (warm) registry_.Put(ShardInfo{name, partition, ShardRole::kRestoring, shared});
  ChangelogRestorer restorer(properties_);
  auto stats = restorer.Restore(
      *shared, config::ChangelogTopic(config_, name), partition, absl::Seconds(60),
      [&](int64_t source_offset) { registry_.SetProgress(name, partition, source_offset, end); });
  if (!stats.ok()) return fail(stats.status());
  auto reader = shared->NewReader();
  if (!reader.ok()) return fail(reader.status());
  auto meta = (*reader)->GetMeta();
  if (!meta.ok()) return fail(meta.status());
  reader->reset();
  Task& task = tasks_[TaskKey(topic, partition)];
  task.scenario = &scenario;
  task.partition = partition;
  task.shard = shared;
  task.meta = *meta;
  task.delivered_changelog_offset = -1;
  task.delivered_changes_offset = -1;
  registry_.SetProgress(name, partition, meta->source_offset(), -1);
  registry_.SetRole(name, partition, ShardRole::kActive);
  // Consume from where the shard stands: it holds the effect of exactly the reports before its
  // source offset. The committed offset is the same, or further when the last batches changed no
  // object (a dead letter, a repeated vote: no changelog record carries their offset), or when
  // the changelog lost records; replaying those reports is then what makes the shard right, and
  // costs at most repeated dead letters.
  const int64_t start = meta->source_offset();
  log::Info("partition assigned", {{"scenario", name},
                                   {"partition", partition},
                                   {"restored_records", stats->records},
                                   {"changelog_offset", meta->changelog_offset()},
                                   {"source_offset", start},
                                   {"committed_offset", *committed}});
  if (*committed > start) {
    log::Info("the shard is behind the committed offset; replaying the reports in between",
              {{"scenario", name},
               {"partition", partition},
               {"source_offset", start},
               {"committed_offset", *committed}});
  }
  return start;
}

void Processor::Session::Revoke(const std::string& topic, int32_t partition) {
  auto it = tasks_.find(TaskKey(topic, partition));
  if (it == tasks_.end()) return;
  const std::string name = it->second.scenario->config->name();
  log::Info("partition revoked", {{"scenario", name}, {"partition", partition}});
  // Readable with max_lag until another node is active for it; kept if this node is one of its
  // standbys.
  standbys_.Adopt(name, partition, it->second.shard, it->second.meta);
  tasks_.erase(it);
}

Processor::Processor(const config::v1::Config& config, ShardRegistry& registry,
                     ShardFiles& files, StandbyReplicator& standbys)
    : config_(config), registry_(registry), files_(files), standbys_(standbys) {}

Processor::~Processor() = default;

absl::Status EnsureTopics(const config::v1::Config& app) {
  auto admin = kafka::Admin::Create(BaseProperties(app));
  if (!admin.ok()) return admin.status();
  std::vector<kafka::TopicSpec> specs;
  int rf = app.kafka().replication_factor();
  for (const config::v1::Scenario& s : app.scenarios()) {
    specs.push_back({config::ReportsTopic(app, s.name()), s.partitions(), rf, {}});
    specs.push_back({config::ChangelogTopic(app, s.name()),
                     s.partitions(),
                     rf,
                     {{"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "0"}}});
    specs.push_back({config::ChangesTopic(app, s.name()), s.partitions(), rf, {}});
    specs.push_back({config::DeadLetterTopic(app, s.name()), s.partitions(), rf, {}});
  }
  specs.push_back({config::MembersTopic(app),
                   1,
                   rf,
                   {{"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "0"}}});
  return (*admin)->EnsureTopics(specs);
}

void Processor::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  while (!stop_.load()) {
    absl::Status status;
    const absl::Time started = absl::Now();
    {
      Session session(config_, registry_, files_, standbys_, batch_stats_, stop_);
      status = session.Run();
    }
    if (stop_.load()) break;
    // A session that ran a while was healthy: its failure starts a fresh backoff sequence.
    if (absl::Now() - started > absl::Seconds(30)) backoff = absl::Milliseconds(100);
    log::Warn("processor session ended, starting a new one",
              {{"error", status.ToString()}, {"backoff", absl::FormatDuration(backoff)}});
    for (absl::Time until = absl::Now() + backoff; absl::Now() < until && !stop_.load();) {
      absl::SleepFor(absl::Milliseconds(50));  // backoff between sessions, checking for stop
    }
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace tally::node
