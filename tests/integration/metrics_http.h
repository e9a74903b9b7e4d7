#ifndef TALLY_TESTS_INTEGRATION_METRICS_HTTP_H_
#define TALLY_TESTS_INTEGRATION_METRICS_HTTP_H_

// Reading a tallyd's Prometheus metrics in tests and benchmarks: a plain HTTP/1.0 request to the
// metrics listener its log names, and the value of one metric line.

#include <string>

namespace tally::test {

// The response (status line, headers, body) to `request` sent to a tallyd's metrics listener,
// whose address its log names ("metrics serving" address=host:port); on failure, what failed.
// Sending and each read time out after 5 s, so a listener that never closes fails the caller.
std::string HttpGet(const std::string& log, const std::string& request);

// The value of the metric line `name` (with its labels, if any: name{a="b"}) in a /metrics
// answer; -1 if it has none.
double MetricValue(const std::string& metrics, const std::string& name);

}  // namespace tally::test

#endif  // TALLY_TESTS_INTEGRATION_METRICS_HTTP_H_
