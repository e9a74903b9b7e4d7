#include "server/node/standby.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/kafka/errors.h"
#include "server/node/changelog_restorer.h"

namespace tally::node {
namespace {

using kafka::MessagePtr;
using kafka::PartitionListPtr;

// A hash every node computes alike, in every release (FNV-1a, then splitmix64's finalizer to
// spread FNV's weak low bits): placement must not depend on a process's hash seed.
uint64_t RendezvousScore(const std::string& node, const std::string& scenario, int32_t partition) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // separator: ("ab","c") and ("a","bc") differ
    h *= 1099511628211ull;
  };
  mix(node);
  mix(scenario);
  mix(absl::StrCat(partition));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

absl::StatusOr<records::v1::ShardMeta> ReadMeta(storage::Shard& shard) {
  auto reader = shard.NewReader();
  if (!reader.ok()) return reader.status();
  return (*reader)->GetMeta();
}

// Records applied per poll round at most: one LMDB transaction per partition and round.
constexpr size_t kMaxRecordsPerRound = 50000;

}  // namespace

std::string PartitionKey(const std::string& scenario, int32_t partition) {
  return absl::StrCat(scenario, "/", partition);
}

std::vector<PartitionId> StandbysOf(const std::string& self, const config::v1::Config& config,
                                    const ClusterMembership& membership) {
  std::vector<PartitionId> out;
  if (std::find(membership.alive.begin(), membership.alive.end(), self) == membership.alive.end()) {
    return out;  // a node the others do not count as alive places nothing
  }
  for (const config::v1::Scenario& scenario : config.scenarios()) {
    const size_t replicas = static_cast<size_t>(std::max(scenario.standby_replicas(), 0));
    if (replicas == 0) continue;
    for (int32_t p = 0; p < scenario.partitions(); ++p) {
      auto active = membership.active.find(PartitionKey(scenario.name(), p));
      std::vector<std::pair<uint64_t, const std::string*>> ranked;
      for (const std::string& node : membership.alive) {
        if (active != membership.active.end() && active->second == node) continue;
        ranked.emplace_back(RendezvousScore(node, scenario.name(), p), &node);
      }
      const size_t n = std::min(replicas, ranked.size());
      std::partial_sort(ranked.begin(), ranked.begin() + static_cast<ptrdiff_t>(n), ranked.end(),
                        [](const auto& a, const auto& b) {
                          return a.first != b.first ? a.first > b.first : *a.second < *b.second;
                        });
      for (size_t i = 0; i < n; ++i) {
        if (*ranked[i].second == self) out.push_back({scenario.name(), p});
      }
    }
  }
  return out;
}

StandbyReplicator::StandbyReplicator(const config::v1::Config& config, ShardRegistry& registry,
                                     ShardFiles& files)
    : config_(config), registry_(registry), files_(files) {
  for (const config::v1::Scenario& s : config_.scenarios()) {
    scenario_of_changelog_[config::ChangelogTopic(config_, s.name())] = s.name();
  }
}

StandbyReplicator::Replica StandbyReplicator::NewReplica(const PartitionId& id,
                                                         std::shared_ptr<storage::Shard> shard,
                                                         const records::v1::ShardMeta& meta) const {
  Replica replica;
  replica.id = id;
  replica.changelog_topic = config::ChangelogTopic(config_, id.scenario);
  replica.reports_topic = config::ReportsTopic(config_, id.scenario);
  replica.shard = std::move(shard);
  replica.meta = meta;
  replica.position = meta.changelog_offset();
  return replica;
}

StandbyReplicator::~StandbyReplicator() { Stop(); }

absl::Status StandbyReplicator::Start(const MembershipSource* membership) {
  bool wanted = false;
  for (const config::v1::Scenario& s : config_.scenarios()) wanted |= s.standby_replicas() > 0;
  if (!wanted || membership == nullptr) return absl::OkStatus();
  membership_ = membership;
  kafka::Properties settings = ChangelogRestorer::FetchProperties();
  // A tail, not a bulk read: librdkafka's default queue is plenty.
  settings.erase("queued.min.messages");
  settings.erase("queued.max.messages.kbytes");
  settings["fetch.wait.max.ms"] = "50";
  // Assigns partitions by hand: never joins a group, never commits.
  settings["group.id"] = absl::StrCat(config_.app_id(), "-standby");
  settings["enable.auto.commit"] = "false";
  settings["enable.auto.offset.store"] = "false";
  settings["auto.offset.reset"] = "earliest";
  settings["client.id"] = absl::StrCat("tally-", config_.node().node_id(), "-standby");
  auto conf = kafka::BuildConf(config::KafkaProperties(config_), settings);
  if (!conf.ok()) return conf.status();
  auto consumer = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer.ok()) return consumer.status();
  // Probe's handle: in the processors' group to read its committed offsets (it never joins nor
  // commits), read_uncommitted so that watermark queries answer the high watermark.
  auto probe_conf = kafka::BuildConf(
      config::KafkaProperties(config_),
      {{"group.id", config_.app_id()},
       {"enable.auto.commit", "false"},
       {"isolation.level", "read_uncommitted"},
       {"client.id", absl::StrCat("tally-", config_.node().node_id(), "-standby-probe")}});
  if (!probe_conf.ok()) return probe_conf.status();
  auto probe = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*probe_conf));
  if (!probe.ok()) return probe.status();
  consumer_ = std::move(*consumer);
  probe_ = std::move(*probe);
  rd_kafka_poll_set_consumer(consumer_.get());
  {
    absl::MutexLock lock(&mu_);
    running_ = true;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void StandbyReplicator::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  rd_kafka_assign(consumer_.get(), nullptr);
  rd_kafka_consumer_close(consumer_.get());
  consumer_.reset();
  probe_.reset();
  absl::MutexLock lock(&mu_);
  running_ = false;
  for (const auto& [key, replica] : replicas_) {
    registry_.Remove(replica.id.scenario, replica.id.partition);
  }
  replicas_.clear();
}

void StandbyReplicator::Adopt(const std::string& scenario, int32_t partition,
                              std::shared_ptr<storage::Shard> shard,
                              const records::v1::ShardMeta& meta) {
  absl::MutexLock lock(&mu_);
  const std::string key = PartitionKey(scenario, partition);
  claimed_.erase(key);
  if (!running_) {
    registry_.Remove(scenario, partition);
    return;
  }
  Replica replica = NewReplica({scenario, partition}, std::move(shard), meta);
  replica.proven_applied = meta.source_offset();  // it was the active copy: exact
  replica.ready = true;
  replica.orphan = true;
  registry_.SetRole(scenario, partition, ShardRole::kStandby);
  replicas_.insert_or_assign(key, std::move(replica));
  assignment_stale_ = true;
  dirty_ = true;
}

void StandbyReplicator::Claim(const std::string& scenario, int32_t partition) {
  absl::MutexLock lock(&mu_);
  const std::string key = PartitionKey(scenario, partition);
  claimed_.insert(key);
  // The registry entry stays until the processor replaces it: the copy is still a good standby.
  if (replicas_.erase(key) > 0) assignment_stale_ = true;
}

void StandbyReplicator::Release(const std::string& scenario, int32_t partition) {
  absl::MutexLock lock(&mu_);
  claimed_.erase(PartitionKey(scenario, partition));
  dirty_ = true;
}

void StandbyReplicator::Run() {
  uint64_t seen = 0;
  bool first = true;
  absl::Time next_probe = absl::Now();
  while (!stop_.load()) {
    bool reconcile;
    {
      absl::MutexLock lock(&mu_);
      reconcile = std::exchange(dirty_, false);
    }
    if (const uint64_t version = membership_->version(); first || version != seen) {
      seen = version;
      first = false;
      reconcile = true;
    }
    if (reconcile) Reconcile(membership_->Current());
    {
      absl::MutexLock lock(&mu_);
      if (std::exchange(assignment_stale_, false)) Assign();
    }
    std::vector<MessagePtr> messages;
    for (MessagePtr msg(rd_kafka_consumer_poll(consumer_.get(), 100));
         msg != nullptr && messages.size() < kMaxRecordsPerRound;
         msg.reset(rd_kafka_consumer_poll(consumer_.get(), 0))) {
      messages.push_back(std::move(msg));
    }
    if (!messages.empty()) Apply(std::move(messages));
    if (absl::Now() >= next_probe) {
      Probe();
      next_probe = absl::Now() + kProbeInterval;
    }
  }
}

void StandbyReplicator::Reconcile(const ClusterMembership& membership) {
  std::vector<PartitionId> wanted = StandbysOf(config_.node().node_id(), config_, membership);
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<std::string> keep;
  for (auto& [key, replica] : replicas_) {
    // An adopted copy stays until the membership names another active for its partition.
    auto active = membership.active.find(key);
    if (replica.orphan &&
        (active == membership.active.end() || active->second == config_.node().node_id())) {
      keep.insert(key);
    }
  }
  for (const PartitionId& id : wanted) {
    std::string key = PartitionKey(id.scenario, id.partition);
    if (claimed_.contains(key)) continue;
    keep.insert(key);
    if (auto it = replicas_.find(key); it != replicas_.end()) {
      it->second.orphan = false;  // placed here anyway
      continue;
    }
    auto shard = files_.Open(id.scenario, id.partition);
    if (!shard.ok()) {
      log::Warn("cannot open a standby shard", {{"scenario", id.scenario},
                                                {"partition", id.partition},
                                                {"error", shard.status().ToString()}});
      continue;
    }
    absl::StatusOr<records::v1::ShardMeta> meta = ReadMeta(**shard);
    if (!meta.ok()) {
      log::Warn("cannot read a standby shard", {{"scenario", id.scenario},
                                                {"partition", id.partition},
                                                {"error", meta.status().ToString()}});
      continue;
    }
    Replica replica = NewReplica(id, *shard, *meta);
    ShardInfo info{id.scenario, id.partition, ShardRole::kRestoring, *shard};
    info.applied_offset = meta->source_offset();
    registry_.Put(std::move(info));
    log::Info("standby placed", {{"scenario", id.scenario},
                                 {"partition", id.partition},
                                 {"changelog_offset", meta->changelog_offset()}});
    replicas_.emplace(key, std::move(replica));
    assignment_stale_ = true;
  }
  std::vector<std::string> gone;
  for (const auto& [key, replica] : replicas_) {
    if (!keep.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) Drop(key, "no longer one of its standbys");
}

void StandbyReplicator::Drop(const std::string& key, const std::string& why) {
  auto it = replicas_.find(key);
  if (it == replicas_.end()) return;
  log::Info(
      "standby dropped",
      {{"scenario", it->second.id.scenario}, {"partition", it->second.id.partition}, {"why", why}});
  registry_.Remove(it->second.id.scenario, it->second.id.partition);
  replicas_.erase(it);  // the shard closes when its last reader lets go
  assignment_stale_ = true;
}

void StandbyReplicator::Assign() {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(replicas_.size())));
  for (const auto& [key, replica] : replicas_) {
    rd_kafka_topic_partition_list_add(list.get(), replica.changelog_topic.c_str(),
                                      replica.id.partition)
        ->offset = replica.position;
  }
  // Everything polled before was applied, so the positions are exact: nothing is read twice
  // or skipped when librdkafka drops what it had prefetched.
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer_.get(), list.get()); err) {
    log::Warn("standby assign failed, retrying", {{"error", rd_kafka_err2str(err)}});
    assignment_stale_ = true;
  }
}

void StandbyReplicator::Apply(std::vector<MessagePtr> messages) {
  absl::flat_hash_map<std::string, storage::StagedObjects> staged;  // by replica key
  absl::flat_hash_set<std::string> touched;                         // replicas whose position moved
  absl::MutexLock lock(&mu_);
  // Messages come in runs of one partition: the replica is looked up once per run.
  const rd_kafka_topic_t* run_topic = nullptr;
  int32_t run_partition = -1;
  std::string key;
  Replica* replica = nullptr;
  for (const MessagePtr& msg : messages) {
    if (msg->rkt == nullptr) {
      if (msg->err) log::Debug("standby consumer event", {{"error", rd_kafka_err2str(msg->err)}});
      continue;
    }
    if (msg->rkt != run_topic || msg->partition != run_partition) {
      run_topic = msg->rkt;
      run_partition = msg->partition;
      replica = nullptr;
      auto scenario = scenario_of_changelog_.find(rd_kafka_topic_name(msg->rkt));
      if (scenario == scenario_of_changelog_.end()) continue;
      key = PartitionKey(scenario->second, msg->partition);
      auto it = replicas_.find(key);
      if (it == replicas_.end()) continue;  // claimed or dropped since it was fetched
      replica = &it->second;
      touched.insert(key);
    }
    if (replica == nullptr) continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      replica->position = std::max(replica->position, msg->offset);
      continue;
    }
    if (msg->err) {
      log::Debug("standby fetch error", {{"replica", key}, {"error", rd_kafka_err2str(msg->err)}});
      continue;
    }
    if (msg->offset < replica->position) continue;  // already applied
    storage::StagedObjects& objects = staged[key];
    const std::string_view object_key(static_cast<const char*>(msg->key), msg->key_len);
    if (msg->payload == nullptr) {
      objects.DeleteObject(object_key);
    } else if (!objects
                    .PutObjectBytes(
                        object_key,
                        std::string_view(static_cast<const char*>(msg->payload), msg->len))
                    .ok()) {
      log::Error("unreadable changelog record: standby dropped",
                 {{"replica", key}, {"offset", msg->offset}});
      staged.erase(key);
      Drop(key, "unreadable changelog record");
      replica = nullptr;  // the rest of the run is skipped
      continue;
    }
    replica->position = msg->offset + 1;
  }
  for (auto& [key, objects] : staged) {
    auto it = replicas_.find(key);
    if (it == replicas_.end()) continue;
    Replica& replica = it->second;
    records::v1::ShardMeta meta = replica.meta;
    meta.set_changelog_offset(replica.position);
    meta.set_source_offset(std::max(meta.source_offset(), objects.max_source_offset()));
    meta.set_changes_offset(std::max(meta.changes_offset(), objects.max_changes_offset()));
    auto batch = replica.shard->NewWriteBatch();
    absl::Status status = batch.ok() ? absl::OkStatus() : batch.status();
    if (status.ok()) {
      (*batch)->PutStaged(std::move(objects));
      (*batch)->SetMeta(meta);
      status = (*batch)->Commit();
    }
    if (!status.ok()) {
      log::Error("standby write failed: standby dropped", {{"scenario", replica.id.scenario},
                                                           {"partition", replica.id.partition},
                                                           {"error", status.ToString()}});
      Drop(key, "write failed");
      continue;
    }
    replica.meta = std::move(meta);
  }
  for (const std::string& key : touched) {
    if (auto it = replicas_.find(key); it != replicas_.end()) Settle(it->second);
  }
}

void StandbyReplicator::PublishProgress(Replica& replica) {
  const int64_t applied = std::max(replica.meta.source_offset(), replica.proven_applied);
  registry_.SetProgress(replica.id.scenario, replica.id.partition, applied,
                        std::max(replica.end_offset, applied));
}

void StandbyReplicator::Probe() {
  // What to probe, taken under the lock; the Kafka round trips run without it.
  std::vector<ProbeTarget> targets;
  PartitionListPtr committed;
  std::vector<std::pair<std::string, std::string>> topics;  // changelog, reports per target
  std::vector<int32_t> partitions;
  {
    absl::MutexLock lock(&mu_);
    if (replicas_.empty()) return;
    committed.reset(rd_kafka_topic_partition_list_new(static_cast<int>(replicas_.size())));
    for (const auto& [key, replica] : replicas_) {
      targets.push_back({key});
      topics.emplace_back(replica.changelog_topic, replica.reports_topic);
      partitions.push_back(replica.id.partition);
      rd_kafka_topic_partition_list_add(committed.get(), replica.reports_topic.c_str(),
                                        replica.id.partition);
    }
  }
  constexpr int kTimeoutMs = 2000;
  // Committed offsets first, high watermarks after (see the header).
  if (rd_kafka_resp_err_t err = rd_kafka_committed(probe_.get(), committed.get(), kTimeoutMs);
      err) {
    log::Debug("standby probe: committed offsets", {{"error", rd_kafka_err2str(err)}});
    return;
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    const rd_kafka_topic_partition_t& c = committed->elems[i];
    targets[i].committed = c.err == RD_KAFKA_RESP_ERR_NO_ERROR ? c.offset : -1;
    int64_t low = 0, high = -1;
    if (rd_kafka_query_watermark_offsets(probe_.get(), topics[i].first.c_str(), partitions[i], &low,
                                         &high, kTimeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      targets[i].high = high;
    }
    if (rd_kafka_query_watermark_offsets(probe_.get(), topics[i].second.c_str(), partitions[i],
                                         &low, &high, kTimeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      targets[i].end = high;
    }
  }
  absl::MutexLock lock(&mu_);
  for (const ProbeTarget& target : targets) {
    auto it = replicas_.find(target.key);
    if (it == replicas_.end()) continue;
    Replica& replica = it->second;
    if (target.end >= 0) replica.end_offset = target.end;
    Settle(replica);  // the previous probe's target first: the new one supersedes it
    if (target.high >= 0 && target.committed >= 0) replica.pending = target;
    Settle(replica);
  }
}

void StandbyReplicator::Settle(Replica& replica) {
  if (replica.pending.high >= 0 && replica.position >= replica.pending.high) {
    replica.proven_applied = std::max(replica.proven_applied, replica.pending.committed);
    replica.pending = ProbeTarget();
    if (!replica.ready) {
      replica.ready = true;
      log::Info("standby caught up", {{"scenario", replica.id.scenario},
                                      {"partition", replica.id.partition},
                                      {"changelog_offset", replica.position}});
    }
  }
  PublishProgress(replica);
  if (replica.ready) {
    registry_.SetRole(replica.id.scenario, replica.id.partition, ShardRole::kStandby);
  }
}

}  // namespace tally::node
