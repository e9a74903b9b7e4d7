#ifndef TALLY_SERVER_COMMON_METRICS_SERVER_H_
#define TALLY_SERVER_COMMON_METRICS_SERVER_H_

// MetricsServer: a minimal plain-HTTP listener for Prometheus scrapes. GET /metrics answers 200
// with what `render` returns (Prometheus text exposition format); any other request gets 404.
// One thread serves one connection at a time, each bounded by a 2 s I/O timeout, which suits a
// scraper polling every few seconds. Thread-safe to construct and destroy from one thread.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace tally::common {

class MetricsServer {
 public:
  // Listens on `address` (host:port, IPv4 or a host name; port 0 picks a free one).
  // INVALID_ARGUMENT naming server.metrics_address if it does not parse, UNAVAILABLE if it
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                              std::function<std::string()> render);
  ~MetricsServer();

  // host:port it listens on (the bound port).
  const std::string& address() const { return address_; }

 private:
  MetricsServer(int fd, std::string address, std::function<std::string()> render);
  void Run();
  void Serve(int connection);

  const int fd_;
  const std::string address_;
  const std::function<std::string()> render_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A Prometheus label value: backslash, double quote and newline escaped.
std::string PrometheusLabel(const std::string& value);

}  // namespace tally::common

#endif  // TALLY_SERVER_COMMON_METRICS_SERVER_H_
