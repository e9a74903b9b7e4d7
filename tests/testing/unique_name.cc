#include "tests/testing/unique_name.h"

#include <cstdint>
#include <cstdio>

#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"

namespace tally::test {
namespace {

constexpr size_t kMaxTopicName = 249;
constexpr size_t kSuffixLength = 17;  // '-' and 16 hex digits

bool IsTopicChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

uint64_t RandomBits() {
  // absl::BitGen seeds itself from the OS, so names differ across processes as well.
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* const gen = new absl::BitGen();  // never destroyed: trivially safe at exit
  absl::MutexLock lock(&mu);
  return absl::Uniform<uint64_t>(*gen);
}

}  // namespace

std::string UniqueName(std::string_view prefix) {
  std::string name;
  for (char c : prefix.substr(0, kMaxTopicName - kSuffixLength)) {
    name.push_back(IsTopicChar(c) ? c : '_');
  }
  char suffix[kSuffixLength + 1];
  std::snprintf(suffix, sizeof(suffix), "-%016llx", static_cast<unsigned long long>(RandomBits()));
  name.append(suffix);
  return name;
}

}  // namespace tally::test
