#ifndef TALLY_TESTS_FAULTS_ROUTER_POOL_H_
#define TALLY_TESTS_FAULTS_ROUTER_POOL_H_

// The routers the suite's clients talk to, and which of them the test has taken down. Clients
// stay with their preferred router while it is up (so one agent's reports go through one
// producer, in order) and move to the next live one while it is down. Thread-safe.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tally/v1/state.grpc.pb.h"

namespace tally::test {

class RouterPool {
 public:
  struct Choice {
    std::string id;
    std::shared_ptr<v1::StateService::Stub> stub;  // null: no router is up
  };

  // Adds a live router (or replaces the address of `id`, which is then live again).
  void Set(const std::string& id, const std::string& address);
  // The test is about to kill or stop `id`: clients move away from it.
  void MarkDown(const std::string& id);
  bool Up(const std::string& id) const;
  // The `preferred`-th router (mod the pool's size) if up, else the next one up.
  Choice Pick(size_t preferred) const;
  size_t size() const;

 private:
  struct Router {
    std::string id;
    std::shared_ptr<v1::StateService::Stub> stub;
    bool up = true;
  };
  mutable std::mutex mu_;
  std::vector<Router> routers_;  // Guarded by mu_.
};

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_ROUTER_POOL_H_
