#ifndef TALLY_SERVER_WATCH_CHANGE_FEED_H_
#define TALLY_SERVER_WATCH_CHANGE_FEED_H_

// ChangeFeed is a router's one tail of the scenarios' changes topics (read_committed), fanned
// out to every watcher with its filter: one Kafka consumer per router, not one per watcher.
// It starts at the end of every partition and keeps, per scenario, the position up to which it
// has dispatched (next offset per partition).
//
// A watcher resuming from an older position reads the gap [its position, the feed's position)
// with ReadBacklog (a short-lived consumer of its own) and joins the live tail after it.
//
// Thread safety: Start/Stop from one thread; the rest from any thread. Subscriber callbacks run
// on the feed's threads while it holds its lock: they must not block nor call into the feed.
// One subscriber's callbacks never run at the same time.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/slice.h"
#include "server/kafka/config.h"
#include "server/watch/fan_out.h"
#include "tally/config/v1/config.pb.h"
#include "tally/v1/state.pb.h"

namespace tally::watch {

// Which objects a watch covers: one key, or every key under a prefix (empty: all).
struct Filter {
  std::string object_key;
  std::string prefix;
  bool Matches(const std::string& key) const;
};

struct ChangeItem {
  int32_t partition = 0;
  int64_t offset = 0;
  v1::StateChange change;
  // Live events only (empty for backlog reads): the feed's position right after the event, and
  // the WatchStateResponse of the event with that position as its resume token, serialized once
  // for every watcher it goes to. The position is a valid token for a watcher that has written
  // every earlier live event it was given: every event before it was dispatched no later than
  // this one, to this watcher's queue or to none.
  std::vector<int64_t> positions;
  grpc::Slice response;
};

// A change event read from a changes topic (untrusted bytes) as the feed delivers it; false if
// the bytes are not a tally.records.v1.ChangeEvent.
bool ParseChangeItem(const void* payload, size_t size, int32_t partition, int64_t offset,
                     ChangeItem& item);

// The feed's position in one scenario at one progress tick, and the WatchStateResponse carrying
// Progress with that position as its resume token, serialized once for every watcher it goes to.
struct ProgressTick {
  std::vector<int64_t> positions;
  grpc::Slice response;
};

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // Every event of the subscribed scenario that passes the filter, in offset order per
  // partition, from the positions Subscribe() returned. One item is shared by every subscriber
  // it matches (the feed copies nothing per watcher): keep the pointer, not a copy.
  virtual void OnLive(const std::shared_ptr<const ChangeItem>& item) = 0;
  // About once a second: every event before `tick->positions` has been passed to OnLive or did
  // not match. One tick is shared by every subscriber of the scenario.
  virtual void OnProgress(const std::shared_ptr<const ProgressTick>& tick) = 0;
  // Events waiting to be written (for DescribeCluster's watcher lag).
  virtual size_t queued() const = 0;
};

struct FeedStats {
  int32_t watchers = 0;
  int64_t queued_events = 0;      // all watchers
  int64_t max_queued_events = 0;  // the most behind watcher
};

class ChangeFeed {
 public:
  // `config` must outlive the feed.
  explicit ChangeFeed(const config::v1::Config& config);
  ~ChangeFeed();

  // Assigns the end of every changes partition and starts the tail thread. UNAVAILABLE if the
  // ends cannot be read before `deadline`.
  absl::Status Start(absl::Time deadline);
  // Stops the tail; waits for running ReadBacklog calls to notice. Idempotent.
  void Stop();

  // Registers `subscriber` (which must stay valid until Unsubscribe returns) for `scenario`;
  // returns the positions its live events start at. Subscribers with the same `connection`
  // (e.g. the client's address) get an event at about the same time, from different threads,
  // which lets gRPC put their messages into one write on that connection.
  std::vector<int64_t> Subscribe(const std::string& scenario, Filter filter, Subscriber* subscriber,
                                 const std::string& connection = "");
  // After it returns, no callback of the subscriber runs or will run.
  void Unsubscribe(Subscriber* subscriber);

  // Reads the events of (scenario, partition) with offsets in [from, to) that pass `filter`,
  // from Kafka, passing each to `emit` (false: stop). OUT_OF_RANGE if `from` is older than the
  // topic keeps (retention): the caller must re-list. CANCELLED if `emit` or `cancelled` says so.
  absl::Status ReadBacklog(const std::string& scenario, int32_t partition, int64_t from, int64_t to,
                           const Filter& filter, const std::function<bool(const ChangeItem&)>& emit,
                           const std::atomic<bool>& cancelled);

  FeedStats Stats() const;

 private:
  struct Registration {
    std::string scenario;
    Filter filter;
    std::string connection;
  };
  void Run();
  // One event of `scenario`'s changes topic, on the tail thread: moves the position and hands
  // the event to the subscribers it matches.
  void Dispatch(const rd_kafka_message_t& msg, const std::string& scenario,
                std::vector<Subscriber*>& matched);

  // Constant after construction.
  const config::v1::Config& config_;
  absl::flat_hash_map<std::string, std::string> scenario_of_topic_;

  kafka::HandlePtr consumer_;        // the tail; used by its thread after Start()
  std::unique_ptr<FanOut> fan_out_;  // the tail thread's helpers; from Start() to Stop()
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::vector<int64_t>> positions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Subscriber*, Registration> subscribers_ ABSL_GUARDED_BY(mu_);
  // The subscribers in dispatch order: by connection.
  absl::btree_set<std::pair<std::string, Subscriber*>> order_ ABSL_GUARDED_BY(mu_);
  // Subscribers per scenario: events of a scenario nobody watches only move its position.
  absl::flat_hash_map<std::string, int> watchers_of_ ABSL_GUARDED_BY(mu_);
  int backlog_readers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::watch

#endif  // TALLY_SERVER_WATCH_CHANGE_FEED_H_
