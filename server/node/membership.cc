#include "server/node/membership.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/kafka/errors.h"

namespace tally::node {
namespace {

internal::v1::ShardRole ToProto(ShardRole role) {
  switch (role) {
    case ShardRole::kRestoring:
      return internal::v1::SHARD_ROLE_RESTORING;
    case ShardRole::kActive:
      return internal::v1::SHARD_ROLE_ACTIVE;
    case ShardRole::kStandby:
      return internal::v1::SHARD_ROLE_STANDBY;
  }
  return internal::v1::SHARD_ROLE_UNSPECIFIED;
}

}  // namespace

MembershipPublisher::MembershipPublisher(const config::v1::Config& config,
                                         const ShardRegistry& registry, std::string endpoint)
    : config_(config),
      registry_(registry),
      endpoint_(std::move(endpoint)),
      started_ms_(absl::ToUnixMillis(absl::Now())) {}

MembershipPublisher::~MembershipPublisher() { Stop(); }

absl::Status MembershipPublisher::Start() {
  auto conf = kafka::BuildConf(
      config::KafkaProperties(config_),
      {{"enable.idempotence", "true"},
       {"acks", "all"},
       {"linger.ms", "0"},
       // Heartbeats must resume soon after a Kafka outage, and librdkafka's reconnect backoff
       // grows to 10 s by default: routers would take a node reconnecting late for dead.
       {"reconnect.backoff.max.ms", "1000"},
       {"client.id", absl::StrCat("tally-", config_.node().node_id(), "-members")}});
  if (!conf.ok()) return conf.status();
  auto producer = kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer.ok()) return producer.status();
  producer_ = std::move(*producer);
  topic_.reset(rd_kafka_topic_new(producer_.get(), config::MembersTopic(config_).c_str(), nullptr));
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void MembershipPublisher::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  Publish(/*leaving=*/true);
  if (rd_kafka_flush(producer_.get(), 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log::Warn("the leaving membership record was not delivered; routers notice the silence");
  }
  topic_.reset();
  producer_.reset();
}

internal::v1::MemberRecord MembershipPublisher::Snapshot(bool leaving) const {
  internal::v1::MemberRecord record;
  record.set_node_id(config_.node().node_id());
  record.set_endpoint(endpoint_);
  record.set_heartbeat_ms(absl::ToUnixMillis(absl::Now()));
  record.set_heartbeat_interval_ms(config::DurationMs(config_.node().heartbeat_interval()));
  record.set_started_ms(started_ms_);
  record.set_leaving(leaving);
  if (leaving) return record;
  for (const ShardInfo& info : registry_.List()) {
    internal::v1::PartitionState* p = record.add_partitions();
    p->set_scenario(info.scenario);
    p->set_partition(info.partition);
    p->set_role(ToProto(info.role));
    p->set_applied_offset(info.applied_offset);
    p->set_end_offset(std::max(info.end_offset, info.applied_offset));
    p->set_since_ms(info.since_ms);
  }
  return record;
}

void MembershipPublisher::Publish(bool leaving) {
  std::string value = Snapshot(leaving).SerializeAsString();
  const std::string& key = config_.node().node_id();
  if (rd_kafka_produce(topic_.get(), 0, RD_KAFKA_MSG_F_COPY, value.data(), value.size(), key.data(),
                       key.size(), nullptr) != 0) {
    log::Warn("cannot queue the membership record",
              {{"error", rd_kafka_err2str(rd_kafka_last_error())}});
  }
  rd_kafka_poll(producer_.get(), 0);
}

void MembershipPublisher::Run() {
  const absl::Duration interval =
      absl::Milliseconds(config::DurationMs(config_.node().heartbeat_interval()));
  uint64_t seen = registry_.generation();
  while (!stop_.load()) {
    Publish(/*leaving=*/false);
    // Wake early when the shards change, so routers learn of moves without waiting a heartbeat;
    // wake at least every 100 ms to notice Stop().
    absl::Time next = absl::Now() + interval;
    while (!stop_.load() && absl::Now() < next) {
      uint64_t now_seen =
          registry_.WaitForChange(seen, std::min(next, absl::Now() + absl::Milliseconds(100)));
      rd_kafka_poll(producer_.get(), 0);
      if (now_seen != seen) {
        seen = now_seen;
        break;
      }
    }
  }
}

}  // namespace tally::node
