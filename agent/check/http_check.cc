#include "agent/check/http_check.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tally::agent {
namespace {

constexpr std::string_view kScheme = "http://";

int MillisUntil(absl::Time deadline) {
  int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
}

// Waits until `fd` is ready for `events` or the deadline passes.
absl::Status WaitReady(int fd, short events, absl::Time deadline) {
  for (;;) {
    if (absl::Now() >= deadline) return absl::DeadlineExceededError("timed out");
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, MillisUntil(deadline));
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("poll: ", std::strerror(errno)));
    }
  }
}

// Closes the socket when it goes out of scope.
struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

absl::Status Connect(const HttpUrl& url, absl::Time deadline, Socket& sock) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addrs = nullptr;
  int rc = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &addrs);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", url.host, ": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError("no address");
  for (addrinfo* a = addrs; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = absl::UnavailableError(absl::StrCat("connect: ", std::strerror(errno)));
      ::close(fd);
      continue;
    }
    last = WaitReady(fd, POLLOUT, deadline);
    int err = 0;
    socklen_t len = sizeof(err);
    if (last.ok() && (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
      last = absl::UnavailableError(absl::StrCat("connect: ", std::strerror(err)));
    }
    if (last.ok()) {
      sock.fd = fd;
      break;
    }
    ::close(fd);
  }
  ::freeaddrinfo(addrs);
  return last;
}

}  // namespace

absl::StatusOr<HttpUrl> ParseHttpUrl(const std::string& url) {
  if (!url.starts_with(kScheme)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" is not an http:// URL"));
  }
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  HttpUrl out;
  out.path = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (out.path.find('#') != std::string::npos) out.path.resize(out.path.find('#'));
  if (out.path.empty() || out.path[0] != '/') out.path = absl::StrCat("/", out.path);
  if (authority.find('@') != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\": user info is not supported"));
  }
  std::string_view port;
  if (authority.starts_with("[")) {  // [IPv6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("\"", url, "\": unclosed '['"));
    }
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':')
        return absl::InvalidArgumentError(absl::StrCat("\"", url, "\": bad host"));
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  int port_number = 80;
  if (!port.empty() &&
      (!absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &port_number) ||
       port_number < 1 || port_number > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\": bad port"));
  }
  if (out.host.empty()) return absl::InvalidArgumentError(absl::StrCat("\"", url, "\": no host"));
  out.port = absl::StrCat(port_number);
  return out;
}

HttpCheck::HttpCheck(v1::HttpCheck config, HttpUrl url, absl::Duration timeout)
    : config_(std::move(config)), url_(std::move(url)), timeout_(timeout) {}

std::string HttpCheck::Describe() const { return absl::StrCat("http GET ", config_.url()); }

absl::StatusOr<int> HttpCheck::FetchStatus() {
  const absl::Time deadline = absl::Now() + timeout_;
  Socket sock;
  if (absl::Status s = Connect(url_, deadline, sock); !s.ok()) return s;
  const bool v6 = url_.host.find(':') != std::string::npos;
  std::string request =
      absl::StrCat("GET ", url_.path, " HTTP/1.1\r\nHost: ", v6 ? "[" : "", url_.host,
                   v6 ? "]" : "", url_.port == "80" ? "" : ":", url_.port == "80" ? "" : url_.port,
                   "\r\nUser-Agent: tally-agent\r\nAccept: */*\r\n"
                   "Connection: close\r\n\r\n");
  std::string_view pending = request;
  while (!pending.empty()) {
    if (absl::Status s = WaitReady(sock.fd, POLLOUT, deadline); !s.ok()) return s;
    ssize_t n = ::send(sock.fd, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    pending.remove_prefix(static_cast<size_t>(n));
  }
  std::string response;
  while (response.find("\r\n") == std::string::npos && response.size() < 8192) {
    if (absl::Status s = WaitReady(sock.fd, POLLIN, deadline); !s.ok()) return s;
    char buf[1024];
    ssize_t n = ::recv(sock.fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  // "HTTP/1.1 200 OK"
  std::string_view line = std::string_view(response).substr(0, response.find("\r\n"));
  int code = 0;
  if (!line.starts_with("HTTP/") || line.size() < 12 || line[8] != ' ' ||
      !absl::SimpleAtoi(absl::string_view(line.data() + 9, 3), &code)) {
    return absl::UnavailableError(
        absl::StrCat("not an HTTP status line: \"", std::string(line.substr(0, 64)), "\""));
  }
  return code;
}

absl::StatusOr<std::string> HttpCheck::Run() {
  absl::StatusOr<int> code = FetchStatus();
  if (!code.ok()) {
    return absl::Status(code.status().code(),
                        absl::StrCat(Describe(), ": ", code.status().message()));
  }
  auto it = config_.status_codes().find(*code);
  if (it != config_.status_codes().end()) return it->second;
  if (!config_.otherwise().empty()) return config_.otherwise();
  return absl::NotFoundError(absl::StrCat(Describe(), ": status ", *code, " maps to no state"));
}

}  // namespace tally::agent
