#ifndef TALLY_AGENT_CHECK_HTTP_CHECK_H_
#define TALLY_AGENT_CHECK_HTTP_CHECK_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/check/check.h"

namespace tally::agent {

// A parsed http:// URL.
struct HttpUrl {
  std::string host;
  std::string port;  // "80" if the URL names none
  std::string path;  // "/" if the URL names none; includes the query
};

// INVALID_ARGUMENT unless `url` is http://host[:port][/path] (no TLS, no user info).
absl::StatusOr<HttpUrl> ParseHttpUrl(const std::string& url);

// Sends `GET path HTTP/1.1` with `Connection: close` over a plain TCP socket and maps the status
// code of the response's status line to a state (tally.agent.v1.HttpCheck). The body is not
// read. Connecting, sending and reading the status line share one timeout.
class HttpCheck : public Check {
 public:
  HttpCheck(v1::HttpCheck config, HttpUrl url, absl::Duration timeout);

  absl::StatusOr<std::string> Run() override;
  std::string Describe() const override;

 private:
  absl::StatusOr<int> FetchStatus();

  // Constant after construction.
  const v1::HttpCheck config_;
  const HttpUrl url_;
  const absl::Duration timeout_;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_CHECK_HTTP_CHECK_H_
