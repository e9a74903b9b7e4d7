#include "tests/faults/workload.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/integration/cluster.h"

namespace tally::test {
namespace {

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

}  // namespace

Agents::Agents(RouterPool& pool, Oracle& oracle, std::vector<std::string> keys, int agents,
               uint64_t seed, absl::Duration pace)
    : pool_(pool), oracle_(oracle), keys_(std::move(keys)), pace_(pace) {
  for (int i = 0; i < agents; ++i) {
    threads_.emplace_back([this, i, seed] { Run(i, seed + i); });
  }
}

void Agents::Stop(absl::Duration bound) {
  stop_bound_ms_ = absl::ToInt64Milliseconds(bound);
  stop_ = true;
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::vector<std::string> Agents::unacknowledged() const {
  std::lock_guard lock(mu_);
  return unacknowledged_;
}

void Agents::Run(int index, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::string agent = absl::StrCat("a", index);
  for (size_t n = 0; !stop_.load(); ++n) {
    const std::string& key = n < keys_.size() ? keys_[n] : keys_[rng() % keys_.size()];
    const std::string state = rng() % 2 ? "up" : "down";
    const v1::ReportStateRequest request = ReportRequest(key, agent, state);
    // The same report until it is acknowledged: until then its outcome is unknown, and a later
    // report of this agent must not race it. Retries stay on the same router while it is up, so
    // its producer keeps an earlier attempt ahead of the next report.
    absl::Time give_up = absl::InfiniteFuture();
    for (;;) {
      if (stop_.load() && give_up == absl::InfiniteFuture()) {
        give_up = absl::Now() + absl::Milliseconds(stop_bound_ms_.load());
      }
      RouterPool::Choice router = pool_.Pick(index);
      if (router.stub != nullptr) {
        grpc::ClientContext context;
        context.set_deadline(Deadline(absl::Seconds(5)));
        v1::ReportStateResponse response;
        if (router.stub->ReportState(&context, request, &response).ok()) {
          oracle_.Acknowledge(key, agent, state, response.token());
          break;
        }
        ++retries_;
      }
      if (absl::Now() > give_up) {
        std::lock_guard lock(mu_);
        unacknowledged_.push_back(absl::StrCat(agent, " ", key, "=", state));
        return;
      }
      absl::SleepFor(absl::Milliseconds(50));  // pacing the retries
    }
    if (n + 1 == keys_.size()) ++initial_done_;
    absl::SleepFor(pace_);  // pacing the load
  }
}

Readers::Readers(RouterPool& pool, const Oracle& oracle,
                 std::map<int, std::vector<std::string>> keys, int64_t max_lag, uint64_t seed,
                 absl::Duration pace)
    : pool_(pool), oracle_(oracle), keys_(std::move(keys)), max_lag_(max_lag), pace_(pace) {
  for (const auto& [partition, unused] : keys_) {
    const int p = partition;
    threads_.emplace_back([this, p, seed] { Run(p, true, seed + 2 * p); });
    threads_.emplace_back([this, p, seed] { Run(p, false, seed + 2 * p + 1); });
  }
}

void Readers::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::vector<Readers::Read> Readers::reads() const {
  std::lock_guard lock(mu_);
  return reads_;
}

std::vector<std::string> Readers::stale_fresh_reads() const {
  std::lock_guard lock(mu_);
  return stale_;
}

void Readers::Run(int partition, bool fresh, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::vector<std::string>& keys = keys_.at(partition);
  std::map<std::string, int64_t> seen;  // fresh reads: the newest version read per key
  size_t router_index = rng();
  while (!stop_.load()) {
    absl::SleepFor(pace_);  // pacing the load
    const std::string& key = keys[rng() % keys.size()];
    if (!oracle_.Acknowledged(key)) continue;
    RouterPool::Choice router = pool_.Pick(router_index++);
    if (router.stub == nullptr) continue;
    v1::GetStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_object_key(key);
    request.set_max_lag(fresh ? 0 : max_lag_);
    grpc::ClientContext context;
    Read read;
    read.partition = partition;
    read.fresh = fresh;
    read.start = absl::Now();
    context.set_deadline(Deadline(fresh ? kFreshDeadline : kLaggedDeadline));
    v1::GetStateResponse response;
    grpc::Status status = router.stub->GetState(&context, request, &response);
    read.end = absl::Now();
    // A router the test took down fails the call for its own reason, not the read path's.
    if (!status.ok() && !pool_.Up(router.id)) continue;
    read.code = status.error_code();
    read.message = status.error_message();
    read.served_by = response.served_by();
    std::lock_guard lock(mu_);
    if (fresh && status.ok()) {
      int64_t& newest = seen[key];
      if (response.state().version() < newest) {
        stale_.push_back(absl::StrCat(key, ": v", response.state().version(), " after v", newest,
                                      " (served by ", response.served_by(), ")"));
      }
      newest = std::max(newest, response.state().version());
    } else if (fresh && status.error_code() == grpc::StatusCode::NOT_FOUND) {
      // A key that had a state keeps one: the majority reducer keeps the previous state without
      // a majority, and no vote expires or is purged here. NOT_FOUND after a found read is a
      // copy that lost what it had answered (NOT_FOUND before the first found read is a report
      // acknowledged but not applied yet).
      if (auto it = seen.find(key); it != seen.end()) {
        stale_.push_back(absl::StrCat(key, ": NOT_FOUND after v", it->second, " (",
                                      status.error_message(), ")"));
      }
    }
    reads_.push_back(std::move(read));
  }
}

Watchers::Watchers(RouterPool& pool, const std::string& prefix, int count)
    : pool_(pool), prefix_(prefix), watchers_(count) {
  for (int i = 0; i < count; ++i) watchers_[i].thread = std::thread([this, i] { Run(i); });
}

void Watchers::Stop() {
  stop_ = true;
  {
    std::lock_guard lock(mu_);
    for (Watcher& w : watchers_) {
      if (w.context != nullptr) w.context->TryCancel();
    }
  }
  for (Watcher& w : watchers_) {
    if (w.thread.joinable()) w.thread.join();
  }
}

bool Watchers::Registered() const {
  std::lock_guard lock(mu_);
  return std::all_of(watchers_.begin(), watchers_.end(),
                     [](const Watcher& w) { return w.registered; });
}

bool Watchers::Reached(const std::map<std::string, int64_t>& versions) const {
  std::lock_guard lock(mu_);
  for (const Watcher& w : watchers_) {
    for (const auto& [key, version] : versions) {
      auto it = w.states.find(key);
      if ((it == w.states.end() ? 0 : it->second.second) < version) return false;
    }
  }
  return true;
}

std::vector<std::string> Watchers::errors() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (size_t i = 0; i < watchers_.size(); ++i) {
    for (const std::string& e : watchers_[i].errors) out.push_back(absl::StrCat("watcher ", i, ": ", e));
  }
  return out;
}

std::vector<int> Watchers::resumes() const {
  std::lock_guard lock(mu_);
  std::vector<int> out;
  for (const Watcher& w : watchers_) out.push_back(w.resumes);
  return out;
}

std::vector<std::map<std::string, std::pair<std::string, int64_t>>> Watchers::states() const {
  std::lock_guard lock(mu_);
  std::vector<std::map<std::string, std::pair<std::string, int64_t>>> out;
  for (const Watcher& w : watchers_) out.push_back(w.states);
  return out;
}

void Watchers::Run(int index) {
  Watcher& w = watchers_[index];
  bool first = true;
  while (!stop_.load()) {
    RouterPool::Choice router = pool_.Pick(index);
    if (router.stub == nullptr) {
      absl::SleepFor(absl::Milliseconds(50));  // pacing: no router is up
      continue;
    }
    v1::WatchStateRequest request;
    request.set_scenario(TestCluster::kScenario);
    request.set_prefix(prefix_);
    grpc::ClientContext* context;
    {
      std::lock_guard lock(mu_);
      if (stop_.load()) break;
      if (!first) {
        ++w.resumes;
        if (w.token.empty()) w.errors.push_back("resumed without a token: events may be lost");
      }
      request.set_resume_token(w.token);
      w.context = std::make_unique<grpc::ClientContext>();
      context = w.context.get();
    }
    first = false;
    auto stream = router.stub->WatchState(context, request);
    v1::WatchStateResponse response;
    while (stream->Read(&response)) {
      std::lock_guard lock(mu_);
      if (!response.resume_token().empty()) {
        w.token = response.resume_token();
        w.registered = true;
      }
      if (!response.has_change()) continue;
      const v1::StateChange& c = response.change();
      auto& [state, version] = w.states[c.object_key()];
      if (c.version() <= version) {
        w.errors.push_back(absl::StrCat(c.object_key(), ": duplicate v", c.version(), " after v",
                                        version, " (via ", router.id, ")"));
      } else if (c.version() != version + 1) {
        w.errors.push_back(absl::StrCat(c.object_key(), ": gap, v", c.version(), " after v",
                                        version, " (via ", router.id, ")"));
      }
      if (c.version() > version) {
        state = c.new_state();
        version = c.version();
      }
    }
    grpc::Status status = stream->Finish();
    if (stop_.load()) break;
    if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE ||
        status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      std::lock_guard lock(mu_);
      w.errors.push_back(absl::StrCat("stream ended with ", status.error_message()));
    }
    absl::SleepFor(absl::Milliseconds(100));  // pacing the resumes
  }
}

}  // namespace tally::test
