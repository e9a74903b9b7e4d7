#ifndef TALLY_TESTS_INTEGRATION_REDUCER_MODEL_H_
#define TALLY_TESTS_INTEGRATION_REDUCER_MODEL_H_

// The reducers as the integration tests understand them, written independently of
// server/processor, for checking a cluster's states against an in-memory model.

#include <map>
#include <string>

namespace tally::test {

// `scenario` names the reducer: "maj" (majority, tie keeps the previous state), "plu" (plurality,
// a tie keeps the previous state if tied, else the smallest tied value), "any" (any(attack),
// otherwise ok). votes: agent → state.
std::string ModelReduce(const std::string& scenario,
                        const std::map<std::string, std::string>& votes,
                        const std::string& previous);

}  // namespace tally::test

#endif  // TALLY_TESTS_INTEGRATION_REDUCER_MODEL_H_
