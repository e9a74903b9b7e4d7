#include "tests/faults/oracle.h"

#include "absl/strings/str_cat.h"
#include "server/router/tokens.h"
#include "tests/integration/reducer_model.h"

namespace tally::test {

void Oracle::Acknowledge(const std::string& key, const std::string& agent,
                         const std::string& state, const std::string& token) {
  auto parsed = router::ParseWriteToken(token, "token");
  std::lock_guard lock(mu_);
  votes_[key][agent] = state;
  ++acknowledged_;
  if (!parsed.ok()) {
    errors_.push_back(absl::StrCat(agent, " ", key, "=", state, ": ", parsed.status().message()));
    return;
  }
  LastWrite& last = last_writes_[parsed->partition];
  if (parsed->offset > last.offset) last = {key, token, parsed->offset};
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

std::map<int32_t, Oracle::LastWrite> Oracle::LastWrites() const {
  std::lock_guard lock(mu_);
  return last_writes_;
}

std::vector<std::string> Oracle::errors() const {
  std::lock_guard lock(mu_);
  return errors_;
}

}  // namespace tally::test
