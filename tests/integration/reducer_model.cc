#include "tests/integration/reducer_model.h"

#include <algorithm>

namespace tally::test {

std::string ModelReduce(const std::string& scenario,
                        const std::map<std::string, std::string>& votes,
                        const std::string& previous) {
  if (votes.empty()) return "";
  std::map<std::string, int> counts;
  for (const auto& [agent, state] : votes) ++counts[state];
  if (scenario == "maj") {
    for (const auto& [state, n] : counts) {
      if (2 * n > static_cast<int>(votes.size())) return state;
    }
    return previous;
  }
  if (scenario == "plu") {
    int best = 0;
    for (const auto& [state, n] : counts) best = std::max(best, n);
    if (counts.count(previous) && counts[previous] == best) return previous;
    for (const auto& [state, n] : counts) {
      if (n == best) return state;  // std::map: the smallest tied value
    }
  }
  return counts.count("attack") ? "attack" : "ok";  // any(attack, otherwise ok)
}

}  // namespace tally::test
