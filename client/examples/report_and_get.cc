// Reports a state for an object, reads it back with read-your-writes, and lists the scenario:
//
//   report_and_get [--routers=HOST:PORT,...] [--scenario=demo] [--key=site-1] [--state=attack]
//
// A minimal use of tally::Client; see client/client.h for the contract.

#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "client/client.h"

ABSL_FLAG(std::string, routers, "127.0.0.1:7070", "router endpoints, comma-separated");
ABSL_FLAG(std::string, scenario, "demo", "the scenario to report to");
ABSL_FLAG(std::string, key, "site-1", "the object to report on");
ABSL_FLAG(std::string, state, "attack", "the state to report");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Reports a state, reads it back, and lists the scenario.");
  absl::ParseCommandLine(argc, argv);
  std::vector<std::string> routers =
      absl::StrSplit(absl::GetFlag(FLAGS_routers), ',', absl::SkipEmpty());
  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  const std::string key = absl::GetFlag(FLAGS_key);

  // One client for the whole program: it keeps a channel per router.
  tally::ClientOptions options;
  options.default_timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<tally::Client>> client = tally::Client::Create(routers, options);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 2;
  }

  // The token names the write; Get with it as min_token waits until the owner applied it.
  absl::StatusOr<std::string> token =
      (*client)->Report(scenario, key, "example-agent", absl::GetFlag(FLAGS_state));
  if (!token.ok()) {
    std::cerr << "report failed: " << token.status() << "\n";
    return 1;
  }
  std::cout << "reported, token " << *token << "\n";

  absl::StatusOr<tally::v1::GetStateResponse> got =
      (*client)->Get(scenario, key, {.min_token = *token});
  if (!got.ok()) {
    std::cerr << "get failed: " << got.status() << "\n";
    return 1;
  }
  std::cout << key << " is " << got->state().state() << " (version " << got->state().version()
            << ", " << got->state().votes_size() << " votes, served by " << got->served_by()
            << ")\n";

  // Pages are fetched as the loop reaches them.
  tally::StateList list = (*client)->List(scenario, "", {.page_size = 100});
  int n = 0;
  for (const tally::v1::ObjectState& state : list) {
    std::cout << "  " << state.object_key() << " = " << state.state() << "\n";
    ++n;
  }
  if (!list.status().ok()) {
    std::cerr << "list failed: " << list.status() << "\n";
    return 1;
  }
  std::cout << n << " objects in " << scenario << "\n";
  return 0;
}
