#ifndef TALLY_TESTS_FAULTS_ORACLE_H_
#define TALLY_TESTS_FAULTS_ORACLE_H_

// The fault suite's model of the cluster: every acknowledged report (an OK ReportState), and
// from them the state each object must end in. Thread-safe.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace tally::test {

class Oracle {
 public:
  struct Expected {
    std::string state;                          // the majority of `votes`
    std::map<std::string, std::string> votes;   // agent → its last acknowledged state
  };
  // A write to wait for: the acknowledged report with the greatest offset of a partition.
  struct LastWrite {
    std::string key;
    std::string token;
    int64_t offset = -1;
  };

  // Records that `agent`'s report of `state` on `key` was acknowledged with `token`. Each agent
  // reports in order and moves on only once a report is acknowledged, so the last
  // acknowledgement of (key, agent) is its vote. A token that is not a write token is an error.
  void Acknowledge(const std::string& key, const std::string& agent, const std::string& state,
                   const std::string& token);

  bool Acknowledged(const std::string& key) const;
  int64_t acknowledged() const;
  std::map<std::string, Expected> ExpectedStates() const;
  // By partition.
  std::map<int32_t, LastWrite> LastWrites() const;
  // Acknowledgements whose token was not a write token.
  std::vector<std::string> errors() const;

 private:
  mutable std::mutex mu_;
  // Guarded by mu_.
  std::map<std::string, std::map<std::string, std::string>> votes_;
  std::map<int32_t, LastWrite> last_writes_;
  std::vector<std::string> errors_;
  int64_t acknowledged_ = 0;
};

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_ORACLE_H_
