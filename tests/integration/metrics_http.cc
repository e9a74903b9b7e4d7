#include "tests/integration/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tally::test {

std::string HttpGet(const std::string& log, const std::string& request) {
  const std::string needle = "msg=\"metrics serving\" address=";
  const size_t at = log.find(needle);
  if (at == std::string::npos) return "no \"metrics serving\" line in the log";
  const std::string address = log.substr(at + needle.size(), log.find('\n', at) - at - needle.size());
  const size_t colon = address.rfind(':');
  int port = 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return absl::StrCat("metrics address \"", address, "\" is not IPv4 host:port");
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::StrCat("socket: ", std::strerror(errno));
  const timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  auto failed = [&](const std::string& what) {
    const std::string error = absl::StrCat(what, " ", address, ": ", std::strerror(errno));
    close(fd);
    return error;
  };
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return failed("connect to");
  }
  const std::string line = request + "\r\nHost: tally\r\n\r\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return failed("send to");
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  if (n < 0) return failed(absl::StrCat("after ", response.size(), " bytes, read from"));
  close(fd);
  return response;
}

double MetricValue(const std::string& metrics, const std::string& name) {
  const std::string needle = "\n" + name + " ";
  size_t at = metrics.find(needle);
  if (at == std::string::npos) return -1;
  at += needle.size();
  double value = -1;
  if (!absl::SimpleAtod(metrics.substr(at, metrics.find('\n', at) - at), &value)) return -1;
  return value;
}

}  // namespace tally::test
