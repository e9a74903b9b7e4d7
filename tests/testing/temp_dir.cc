#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

namespace tally::test {
namespace {

std::string BaseDir() {
  for (const char* var : {"TEST_TMPDIR", "TMPDIR"}) {
    const char* dir = std::getenv(var);
    if (dir != nullptr && *dir != '\0') return dir;
  }
  return "/tmp";
}

}  // namespace

TempDir::TempDir() {
  std::string pattern = BaseDir() + "/tally-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) {
    std::fprintf(stderr, "TempDir: mkdtemp(%s) failed: %s\n", pattern.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(buffer.data(), ec);
  path_ = ec ? std::string(buffer.data()) : absolute.string();
}

TempDir::~TempDir() { Remove(); }

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, std::string())) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

void TempDir::Remove() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) std::fprintf(stderr, "TempDir: removing %s: %s\n", path_.c_str(), ec.message().c_str());
  path_.clear();
}

}  // namespace tally::test
