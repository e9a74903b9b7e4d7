#ifndef TALLY_SERVER_ROUTER_REPORT_SINK_H_
#define TALLY_SERVER_ROUTER_REPORT_SINK_H_

// ReportSink writes records to a scenario's reports topic, into the partition the router chose,
// and says when each is durable. KafkaReportSink does it with one idempotent producer
// (enable.idempotence, acks=all) per router: batches form across all concurrent calls.
//
// Thread safety: Send() from any thread; `done` runs on the sink's delivery thread, exactly once
// per Send(), and must not block.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/kafka/config.h"

namespace tally::router {

class ReportSink {
 public:
  // The offset the record got, or UNAVAILABLE (Kafka did not confirm the write: retry; a retried
  // report replaces the same vote, so a duplicate is harmless).
  using Done = std::function<void(absl::StatusOr<int64_t> offset)>;
  virtual ~ReportSink() = default;
  virtual void Send(const std::string& topic, int32_t partition, const std::string& key,
                    const std::string& value, Done done) = 0;
};

class KafkaReportSink final : public ReportSink {
 public:
  // Starts the producer and its delivery thread.
  static absl::StatusOr<std::unique_ptr<KafkaReportSink>> Create(kafka::Properties properties,
                                                                 const std::string& client_id);
  // Waits (bounded) for outstanding writes; those left fail with UNAVAILABLE.
  ~KafkaReportSink() override;

  void Send(const std::string& topic, int32_t partition, const std::string& key,
            const std::string& value, Done done) override;

 private:
  KafkaReportSink() = default;
  static void DeliveryCallback(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque);

  kafka::HandlePtr producer_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_REPORT_SINK_H_
