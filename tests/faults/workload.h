#ifndef TALLY_TESTS_FAULTS_WORKLOAD_H_
#define TALLY_TESTS_FAULTS_WORKLOAD_H_

// The clients of the fault suite, each on threads of its own, all through a RouterPool:
// - Agents: writers doing ReportState; an agent retries a report until it is acknowledged before
//   it moves on, so the Oracle knows every agent's last vote exactly;
// - Readers: per partition one reader of fresh states (max_lag 0) and one of states within a
//   staleness bound (max_lag > 0), recording every read's outcome and time;
// - Watchers: WatchState streams of every object that resume from their last token when a stream
//   ends, checking that each object's versions arrive one after the other.
// Every class is thread-safe; Stop() joins its threads, and the destructors stop.

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tests/faults/oracle.h"
#include "tests/faults/router_pool.h"

namespace tally::test {

class Agents {
 public:
  // `agents` agents "a0".. each vote on every one of `keys` first, then on random ones, one report
  // every `pace`. Agent i prefers router i of the pool.
  Agents(RouterPool& pool, Oracle& oracle, std::vector<std::string> keys, int agents,
         uint64_t seed, absl::Duration pace);
  ~Agents() { Stop(absl::Seconds(1)); }

  // True once every agent has voted on every key.
  bool InitialPassDone() const { return initial_done_.load() == static_cast<int>(threads_.size()); }
  // Each agent finishes the report it is on, retrying for at most `bound`. Idempotent.
  void Stop(absl::Duration bound);
  int64_t retries() const { return retries_.load(); }
  // Reports given up after the stop bound: their outcome is unknown, so the oracle is not exact.
  std::vector<std::string> unacknowledged() const;

 private:
  void Run(int index, uint64_t seed);

  RouterPool& pool_;
  Oracle& oracle_;
  const std::vector<std::string> keys_;
  const absl::Duration pace_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> stop_bound_ms_{1000};
  std::atomic<int> initial_done_{0};
  std::atomic<int64_t> retries_{0};
  mutable std::mutex mu_;
  std::vector<std::string> unacknowledged_;  // Guarded by mu_.
  std::vector<std::thread> threads_;
};

class Readers {
 public:
  struct Read {
    int partition = 0;
    bool fresh = true;  // max_lag 0
    absl::Time start, end;
    grpc::StatusCode code = grpc::StatusCode::OK;
    std::string message;
    std::string served_by;
    bool ok() const {
      return code == grpc::StatusCode::OK || code == grpc::StatusCode::NOT_FOUND;
    }
  };

  // `keys` by partition; a reader reads only keys the oracle has seen acknowledged, with
  // deadlines `fresh_deadline` and `lagged_deadline`, one read every `pace`.
  Readers(RouterPool& pool, const Oracle& oracle, std::map<int, std::vector<std::string>> keys,
          int64_t max_lag, uint64_t seed, absl::Duration pace);
  ~Readers() { Stop(); }
  void Stop();

  std::vector<Read> reads() const;
  // Fresh reads that returned an older version of an object than an earlier fresh read did, or
  // NOT_FOUND after one had found it.
  std::vector<std::string> stale_fresh_reads() const;

  static constexpr absl::Duration kFreshDeadline = absl::Seconds(2);
  static constexpr absl::Duration kLaggedDeadline = absl::Seconds(3);

 private:
  void Run(int partition, bool fresh, uint64_t seed);

  RouterPool& pool_;
  const Oracle& oracle_;
  const std::map<int, std::vector<std::string>> keys_;
  const int64_t max_lag_;
  const absl::Duration pace_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  // Guarded by mu_.
  std::vector<Read> reads_;
  std::vector<std::string> stale_;
  std::vector<std::thread> threads_;
};

class Watchers {
 public:
  // `count` watchers of every object under `prefix`; watcher i prefers router i.
  Watchers(RouterPool& pool, const std::string& prefix, int count);
  ~Watchers() { Stop(); }

  // True once every watcher's stream is open (it received a first message with a token).
  bool Registered() const;
  // True once every watcher has received version `v` of every (key, v) in `versions`.
  bool Reached(const std::map<std::string, int64_t>& versions) const;
  void Stop();

  // Per watcher: versions that did not follow the previous one of their object (gaps,
  // duplicates), how often its stream was resumed, and each object's last state.
  std::vector<std::string> errors() const;
  std::vector<int> resumes() const;
  std::vector<std::map<std::string, std::pair<std::string, int64_t>>> states() const;

 private:
  struct Watcher {
    std::unique_ptr<grpc::ClientContext> context;  // of the open stream
    std::string token;
    std::map<std::string, std::pair<std::string, int64_t>> states;  // key → (state, version)
    std::vector<std::string> errors;
    int resumes = 0;
    bool registered = false;
    std::thread thread;
  };
  void Run(int index);

  RouterPool& pool_;
  const std::string prefix_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<Watcher> watchers_;  // the vector is constant after construction; fields guarded
};

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_WORKLOAD_H_
