#include "tests/faults/router_pool.h"

#include "grpcpp/grpcpp.h"

namespace tally::test {

void RouterPool::Set(const std::string& id, const std::string& address) {
  auto stub = v1::StateService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::lock_guard lock(mu_);
  for (Router& r : routers_) {
    if (r.id == id) {
      r.stub = std::move(stub);
      r.up = true;
      return;
    }
  }
  routers_.push_back({id, std::move(stub), true});
}

void RouterPool::MarkDown(const std::string& id) {
  std::lock_guard lock(mu_);
  for (Router& r : routers_) {
    if (r.id == id) r.up = false;
  }
}

bool RouterPool::Up(const std::string& id) const {
  std::lock_guard lock(mu_);
  for (const Router& r : routers_) {
    if (r.id == id) return r.up;
  }
  return false;
}

RouterPool::Choice RouterPool::Pick(size_t preferred) const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < routers_.size(); ++i) {
    const Router& r = routers_[(preferred + i) % routers_.size()];
    if (r.up) return {r.id, r.stub};
  }
  return {};
}

size_t RouterPool::size() const {
  std::lock_guard lock(mu_);
  return routers_.size();
}

}  // namespace tally::test
