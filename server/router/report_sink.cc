#include "server/router/report_sink.h"

#include "absl/strings/str_cat.h"
#include "server/common/log.h"

namespace tally::router {

absl::StatusOr<std::unique_ptr<KafkaReportSink>> KafkaReportSink::Create(
    kafka::Properties properties, const std::string& client_id) {
  auto conf = kafka::BuildConf(properties, {{"enable.idempotence", "true"},
                                            {"acks", "all"},
                                            // Small batches form under load without delaying a
                                            // lone report noticeably.
                                            {"linger.ms", "2"},
                                            {"batch.num.messages", "10000"},
                                            {"queue.buffering.max.messages", "200000"},
                                            // An RPC waits for this at most: fail it, don't hang.
                                            {"message.timeout.ms", "30000"},
                                            {"client.id", client_id}});
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &KafkaReportSink::DeliveryCallback);
  auto producer = kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer.ok()) return producer.status();
  std::unique_ptr<KafkaReportSink> sink(new KafkaReportSink());
  sink->producer_ = std::move(*producer);
  KafkaReportSink* raw = sink.get();
  sink->poller_ = std::thread([raw] {
    while (!raw->stop_.load()) rd_kafka_poll(raw->producer_.get(), 100);
  });
  return sink;
}

KafkaReportSink::~KafkaReportSink() {
  stop_.store(true);
  if (poller_.joinable()) poller_.join();
  if (rd_kafka_flush(producer_.get(), 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Fail what is left, so every caller hears back.
    rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(producer_.get(), 0);
  }
}

void KafkaReportSink::Send(const std::string& topic, int32_t partition, const std::string& key,
                           const std::string& value, Done done) {
  auto* owned = new Done(std::move(done));
  rd_kafka_resp_err_t err =
      rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                        RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                        RD_KAFKA_V_OPAQUE(owned), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::unique_ptr<Done> callback(owned);
    (*callback)(absl::UnavailableError(
        absl::StrCat("cannot queue the report for Kafka: ", rd_kafka_err2str(err))));
  }
}

void KafkaReportSink::DeliveryCallback(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  std::unique_ptr<Done> callback(static_cast<Done*>(msg->_private));
  if (callback == nullptr) return;
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log::Warn("report not written to Kafka", {{"error", rd_kafka_err2str(msg->err)}});
    (*callback)(absl::UnavailableError(
        absl::StrCat("Kafka did not confirm the write: ", rd_kafka_err2str(msg->err))));
    return;
  }
  (*callback)(msg->offset);
}

}  // namespace tally::router
