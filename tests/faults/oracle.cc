#include "tests/faults/oracle.h"

#include "absl/strings/numbers.h"
#include "tests/integration/reducer_model.h"

namespace tally::test {

void Oracle::Acknowledge(const std::string& key, const std::string& agent,
                         const std::string& state, const std::string& token) {
  const size_t dot = token.rfind('.');
  int64_t offset = -1;
  const bool parsed =
      dot != std::string::npos && absl::SimpleAtoi(token.substr(dot + 1), &offset);
  std::lock_guard lock(mu_);
  votes_[key][agent] = state;
  ++acknowledged_;
  if (!parsed) return;  // the final check then fails on the votes, not here
  LastWrite& last = last_writes_[token.substr(0, dot)];
  if (offset > last.offset) last = {key, token, offset};
}

std::vector<std::string> Oracle::Keys() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> keys;
  for (const auto& [key, votes] : votes_) keys.push_back(key);
  return keys;
}

bool Oracle::Acknowledged(const std::string& key) const {
  std::lock_guard lock(mu_);
  return votes_.count(key) > 0;
}

int64_t Oracle::acknowledged() const {
  std::lock_guard lock(mu_);
  return acknowledged_;
}

std::map<std::string, Oracle::Expected> Oracle::ExpectedStates() const {
  std::lock_guard lock(mu_);
  std::map<std::string, Expected> out;
  for (const auto& [key, votes] : votes_) {
    // The workload gives every object an odd number of voters and two values, so a strict
    // majority exists and the previous state (a tie's winner) never matters.
    out[key] = {ModelReduce("maj", votes, ""), votes};
  }
  return out;
}

std::map<std::string, Oracle::LastWrite> Oracle::LastWrites() const {
  std::lock_guard lock(mu_);
  return last_writes_;
}

}  // namespace tally::test
