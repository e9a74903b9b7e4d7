#include "server/router/membership_view.h"

#include "absl/strings/str_cat.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/kafka/errors.h"

namespace tally::router {
namespace {

constexpr absl::Duration kRebuildInterval = absl::Milliseconds(500);

// Operators follow fail-overs by these lines: a node's turn from alive to dead and back.
void LogLivenessChanges(const RoutingTable& before, const RoutingTable& after) {
  absl::flat_hash_map<std::string, bool> was_alive;
  for (const auto& node : before.nodes()) was_alive[node->member.node_id()] = node->alive;
  for (const auto& node : after.nodes()) {
    auto it = was_alive.find(node->member.node_id());
    const bool known = it != was_alive.end();
    if (known && it->second == node->alive) continue;
    if (!known && !node->alive) continue;  // e.g. records of long-gone nodes read at start
    log::Info(node->alive ? "node alive" : "node dead",
              {{"node", node->member.node_id()},
               {"endpoint", node->member.endpoint()},
               {"heartbeat_ms", node->member.heartbeat_ms()},
               {"leaving", node->member.leaving()}});
  }
}

}  // namespace

MembershipView::MembershipView(const config::v1::Config& config, ShardClientFactory factory)
    : config_(config), factory_(std::move(factory)), table_(std::make_shared<RoutingTable>()) {}

MembershipView::~MembershipView() { Stop(); }

absl::Status MembershipView::Start(absl::Time ready_deadline) {
  const std::string topic = config::MembersTopic(config_);
  auto conf = kafka::BuildConf(config::KafkaProperties(config_),
                               {{"group.id", absl::StrCat(config_.app_id(), ".router")},
                                {"enable.auto.commit", "false"},
                                {"enable.auto.offset.store", "false"},
                                {"fetch.wait.max.ms", "50"},
                                {"reconnect.backoff.max.ms", "1000"},
                                {"client.id", "tally-router-members"}});
  if (!conf.ok()) return conf.status();
  auto consumer = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer.ok()) return consumer.status();
  consumer_ = std::move(*consumer);
  rd_kafka_poll_set_consumer(consumer_.get());
  {
    absl::MutexLock lock(&mu_);
    last_record_at_ = absl::Now();
  }

  // Where the records that exist now end: reading up to there makes the view complete.
  int64_t low = 0, high = 0;
  absl::Status status;
  do {
    int timeout_ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(ready_deadline - absl::Now()), 1, 5000));
    status = kafka::KafkaStatus(rd_kafka_query_watermark_offsets(consumer_.get(), topic.c_str(), 0,
                                                                 &low, &high, timeout_ms),
                                absl::StrCat("read the end of ", topic));
  } while (!status.ok() && absl::Now() < ready_deadline);
  if (!status.ok()) return status;

  kafka::PartitionListPtr assignment(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  if (absl::Status s = kafka::KafkaStatus(rd_kafka_assign(consumer_.get(), assignment.get()),
                                          absl::StrCat("assign ", topic));
      !s.ok()) {
    return s;
  }
  int64_t next = 0;
  while (next < high) {
    if (absl::Now() > ready_deadline) {
      return absl::UnavailableError(absl::StrCat("could not read ", topic, " up to offset ", high,
                                                 " in time (at ", next, ")"));
    }
    kafka::MessagePtr msg(rd_kafka_consumer_poll(consumer_.get(), 100));
    if (msg == nullptr) continue;
    if (msg->err) {
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) break;
      continue;
    }
    next = msg->offset + 1;
    Apply(*msg);
  }
  Rebuild();
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void MembershipView::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  rd_kafka_consumer_close(consumer_.get());
  consumer_.reset();
}

void MembershipView::Run() {
  absl::Time next_rebuild = absl::Now() + kRebuildInterval;
  while (!stop_.load()) {
    kafka::MessagePtr msg(rd_kafka_consumer_poll(consumer_.get(), 100));
    bool changed = false;
    if (msg != nullptr && !msg->err) {
      changed = Apply(*msg);
    } else if (msg != nullptr && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      log::Debug("members consumer event", {{"error", rd_kafka_err2str(msg->err)}});
    }
    if (changed || absl::Now() >= next_rebuild) {
      Rebuild();
      next_rebuild = absl::Now() + kRebuildInterval;
    }
  }
}

bool MembershipView::Apply(const rd_kafka_message_t& msg) {
  internal::v1::MemberRecord record;
  if (msg.payload == nullptr || msg.len > static_cast<size_t>(INT32_MAX) ||
      !record.ParseFromArray(msg.payload, static_cast<int>(msg.len)) || record.node_id().empty()) {
    log::Warn("ignoring a bad record on the members topic", {{"offset", msg.offset}});
    return false;
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  // Nodes heartbeat every interval, so a silence of the whole topic longer than two of them means
  // this tail could not read (Kafka unreachable, or this process stalled), not that all died.
  std::shared_ptr<const RoutingTable> table = table_.load();
  int64_t silence_ms = 1000;
  for (const auto& node : table->nodes()) {
    if (node->alive) {
      silence_ms = std::max<int64_t>(silence_ms, 2 * node->member.heartbeat_interval_ms());
    }
  }
  if (now - last_record_at_ > absl::Milliseconds(silence_ms)) {
    resumption_.at_ms = absl::ToUnixMillis(now);
    resumption_.nodes.clear();
    for (const auto& node : table->nodes()) {
      if (node->alive) resumption_.nodes.insert(node->member.node_id());
    }
    log::Info("the members topic is read again after a silence; its nodes count as heard from now",
              {{"silent_ms", absl::ToInt64Milliseconds(now - last_record_at_)},
               {"alive_nodes", static_cast<int64_t>(resumption_.nodes.size())}});
  }
  last_record_at_ = now;
  members_[record.node_id()] = std::move(record);
  return true;
}

void MembershipView::Rebuild() {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<const RoutingTable> previous = table_.load();
  auto table = std::make_shared<const RoutingTable>(
      ++version_, members_, absl::ToUnixMillis(absl::Now()), previous.get(), factory_, resumption_);
  LogLivenessChanges(*previous, *table);
  table_.store(std::move(table));
}

std::shared_ptr<const RoutingTable> MembershipView::WaitNewer(uint64_t version,
                                                              absl::Time deadline) const {
  auto newer = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return version_ > version; };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(absl::Condition(&newer), deadline);
  return table_.load();
}

node::ClusterMembership NodeMembership::Current() const {
  std::shared_ptr<const RoutingTable> table = routes_.Current();
  node::ClusterMembership membership;
  for (const auto& node : table->nodes()) {
    if (node->alive) membership.alive.push_back(node->member.node_id());
  }
  for (const config::v1::Scenario& scenario : config_.scenarios()) {
    for (int32_t p = 0; p < scenario.partitions(); ++p) {
      const PartitionRoute* route = table->Find(scenario.name(), p);
      if (route != nullptr && route->active.has_value()) {
        membership.active[node::PartitionKey(scenario.name(), p)] =
            route->active->node->member.node_id();
      }
    }
  }
  return membership;
}

}  // namespace tally::router
