#include "agent/check/check.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/check/http_check.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace tally::agent {
namespace {

std::unique_ptr<Check> MakeOrDie(const v1::Check& config) {
  auto check = NewCheck(config);
  EXPECT_TRUE(check.ok()) << check.status();
  return check.ok() ? std::move(*check) : nullptr;
}

v1::Check Exec(std::initializer_list<std::string> command) {
  v1::Check c;
  for (const std::string& arg : command) c.mutable_exec()->add_command(arg);
  return c;
}

v1::Check Shell(const std::string& script) { return Exec({"sh", "-c", script}); }

TEST(ExecCheckTest, ExitCodeMapsToState) {
  v1::Check config = Shell("exit 3");
  (*config.mutable_exec()->mutable_exit_codes())[0] = "ok";
  (*config.mutable_exec()->mutable_exit_codes())[3] = "degraded";
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "degraded");
}

TEST(ExecCheckTest, FirstLineOfOutputIsTheState) {
  v1::Check config = Shell("printf '  under-attack \\nsecond line\\n'; exit 1");
  config.mutable_exec()->set_state_from_output(true);
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "under-attack");
}

TEST(ExecCheckTest, ListedExitCodeWinsOverOutput) {
  v1::Check config = Shell("echo fine; exit 2");
  config.mutable_exec()->set_state_from_output(true);
  (*config.mutable_exec()->mutable_exit_codes())[2] = "critical";
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "critical");
}

TEST(ExecCheckTest, OtherwiseAppliesWhenNothingElseDoes) {
  v1::Check config = Shell("exit 7");
  (*config.mutable_exec()->mutable_exit_codes())[0] = "ok";
  config.mutable_exec()->set_state_from_output(true);  // but there is no output
  config.mutable_exec()->set_otherwise("unknown");
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "unknown");
}

TEST(ExecCheckTest, UnmappedResultIsNotFound) {
  v1::Check config = Shell("exit 7");
  (*config.mutable_exec()->mutable_exit_codes())[0] = "ok";
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  absl::StatusOr<std::string> state = check->Run();
  EXPECT_TRUE(absl::IsNotFound(state.status())) << state.status();
  EXPECT_NE(state.status().message().find("exit code 7"), absl::string_view::npos);
}

TEST(ExecCheckTest, MissingProgramIsUnavailable) {
  v1::Check config = Exec({"/nonexistent/tally-check"});
  config.mutable_exec()->set_otherwise("unknown");
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_TRUE(absl::IsUnavailable(check->Run().status()));
}

// True once `pid` has exited (gone, or a zombie its new parent has not reaped yet).
bool Exited(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  // "pid (comm) S ...": the state follows the last ')'.
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || line.substr(paren + 2, 1) == "Z";
}

TEST(ExecCheckTest, TimeoutKillsTheCommandAndWhatItStarted) {
  test::TempDir dir;
  const std::string pid_file = dir.path() + "/child.pid";
  // The background sleep keeps stdout open: only killing the process group ends the check.
  v1::Check config = Shell(absl::StrCat("sleep 30 & echo $! > ", pid_file, "; sleep 30"));
  config.mutable_exec()->set_otherwise("unknown");
  config.mutable_timeout()->set_nanos(200 * 1000 * 1000);
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> state = check->Run();
  EXPECT_TRUE(absl::IsDeadlineExceeded(state.status())) << state.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  pid_t child = 0;
  std::ifstream(pid_file) >> child;
  ASSERT_GT(child, 0) << "the command did not get to start its child";
  EXPECT_TRUE(test::WaitFor([&] { return Exited(child); }, absl::Seconds(5)))
      << "the command's child " << child << " outlived the timeout";
}

TEST(ExecCheckTest, CommandKilledBySignalGetsOtherwise) {
  v1::Check config = Shell("kill -9 $$");
  (*config.mutable_exec()->mutable_exit_codes())[0] = "ok";
  config.mutable_exec()->set_otherwise("crashed");
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "crashed");
}

TEST(FileCheckTest, TrimmedFirstLineIsTheState) {
  test::TempDir dir;
  std::string path = dir.path() + "/state";
  std::ofstream(path) << "\t maintenance  \nignored\n";
  v1::Check config;
  config.mutable_file()->set_path(path);
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "maintenance");

  std::ofstream(path, std::ios::trunc) << "   \n";
  EXPECT_TRUE(absl::IsNotFound(check->Run().status()));
}

TEST(FileCheckTest, MissingFileIsUnavailable) {
  v1::Check config;
  config.mutable_file()->set_path("/nonexistent/tally-state");
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_TRUE(absl::IsUnavailable(check->Run().status()));
}

// A one-connection-at-a-time HTTP server on 127.0.0.1:0 that answers every request with
// `status`, or never answers if status is 0. Records the request heads it got.
class TinyHttpServer {
 public:
  explicit TinyHttpServer(int status) : status_(status) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TinyHttpServer() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  std::vector<std::string> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  void Serve() {
    for (;;) {
      int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string head;
      char buf[512];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      {
        absl::MutexLock lock(&mu_);
        requests_.push_back(head);
      }
      if (status_ != 0) {
        std::string reply =
            absl::StrCat("HTTP/1.1 ", status_, " Whatever\r\nContent-Length: 2\r\n\r\nhi");
        ::send(conn, reply.data(), reply.size(), MSG_NOSIGNAL);
      } else {
        ::recv(conn, buf, sizeof(buf), 0);  // until the client gives up and closes
      }
      ::close(conn);
    }
  }

  const int status_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> requests_ ABSL_GUARDED_BY(mu_);
};

v1::Check Http(int port, const std::string& path) {
  v1::Check c;
  c.mutable_http()->set_url(absl::StrCat("http://127.0.0.1:", port, path));
  (*c.mutable_http()->mutable_status_codes())[200] = "up";
  c.mutable_http()->set_otherwise("down");
  return c;
}

TEST(HttpCheckTest, StatusCodeMapsToStateAndRequestIsPlainGet) {
  TinyHttpServer server(200);
  auto check = MakeOrDie(Http(server.port(), "/health?deep=1"));
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "up");
  std::vector<std::string> requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(requests[0].starts_with("GET /health?deep=1 HTTP/1.1\r\n")) << requests[0];
  EXPECT_NE(requests[0].find(absl::StrCat("Host: 127.0.0.1:", server.port(), "\r\n")),
            std::string::npos)
      << requests[0];
}

TEST(HttpCheckTest, UnlistedStatusGetsOtherwise) {
  TinyHttpServer server(503);
  auto check = MakeOrDie(Http(server.port(), "/"));
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->Run().value_or("error"), "down");
}

TEST(HttpCheckTest, UnlistedStatusWithoutOtherwiseIsNotFound) {
  TinyHttpServer server(404);
  v1::Check config = Http(server.port(), "/");
  config.mutable_http()->clear_otherwise();
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_TRUE(absl::IsNotFound(check->Run().status()));
}

TEST(HttpCheckTest, RefusedConnectionIsUnavailable) {
  int port = 0;
  {
    TinyHttpServer server(200);
    port = server.port();
  }  // a port nobody listens on any more
  auto check = MakeOrDie(Http(port, "/"));
  ASSERT_NE(check, nullptr);
  EXPECT_TRUE(absl::IsUnavailable(check->Run().status()));
}

TEST(HttpCheckTest, SilentServerTimesOut) {
  TinyHttpServer server(0);
  v1::Check config = Http(server.port(), "/");
  config.mutable_timeout()->set_nanos(200 * 1000 * 1000);
  auto check = MakeOrDie(config);
  ASSERT_NE(check, nullptr);
  EXPECT_TRUE(absl::IsDeadlineExceeded(check->Run().status()));
}

TEST(HttpUrlTest, ParsesHostPortAndPath) {
  auto url = ParseHttpUrl("http://example.com:8080/a/b?c=d#frag");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "example.com");
  EXPECT_EQ(url->port, "8080");
  EXPECT_EQ(url->path, "/a/b?c=d");
  url = ParseHttpUrl("http://[::1]");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, "80");
  EXPECT_EQ(url->path, "/");
  url = ParseHttpUrl("http://h?q");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->path, "/?q");
}

TEST(HttpUrlTest, RefusesWhatItCannotFetch) {
  for (const char* bad : {"https://example.com/", "example.com", "http://:80/", "http://h:0/",
                          "http://h:99999/", "http://user@h/", "http://[::1/"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseHttpUrl(bad).status())) << bad;
  }
}

TEST(NewCheckTest, RefusesChecksThatCannotYieldAState) {
  v1::Check none;
  EXPECT_TRUE(absl::IsInvalidArgument(NewCheck(none).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(NewCheck(Exec({"true"})).status()));
  v1::Check http;
  http.mutable_http()->set_url("http://localhost/");
  EXPECT_TRUE(absl::IsInvalidArgument(NewCheck(http).status()));
  v1::Check file;
  file.mutable_file();
  EXPECT_TRUE(absl::IsInvalidArgument(NewCheck(file).status()));
  v1::Check negative = Shell("true");
  negative.mutable_exec()->set_otherwise("x");
  negative.mutable_timeout()->set_seconds(-1);
  absl::Status status = NewCheck(negative).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_NE(status.message().find("check.timeout"), absl::string_view::npos) << status;
}

}  // namespace
}  // namespace tally::agent
