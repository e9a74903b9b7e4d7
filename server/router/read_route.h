#ifndef TALLY_SERVER_ROUTER_READ_ROUTE_H_
#define TALLY_SERVER_ROUTER_READ_ROUTE_H_

// ReadRoute holds the routing decisions of one read of one partition (see Router's class
// comment): which copies to try and in what order, each attempt's deadline, which answers end the
// read, which copies to mark unreachable, and the error when the deadline passes. It makes no
// calls and does not wait: a driver calls the copies it names and, once they are all tried,
// gives it a newer routing table. Router drives it synchronously (a loop) and asynchronously
// (callbacks); both drivers take every decision from here.
//
//   ReadRoute route(scenario, partition, max_lag, deadline, routes.Current());
//   while (true) {
//     while (std::optional<ReadRoute::Attempt> attempt = route.Next()) {
//       absl::StatusOr<Response> response = read(*attempt->client, attempt->deadline);
//       if (route.Settled(*attempt, response.status())) return response;
//     }
//     if (route.Expired()) return route.LastError();
//     route.Retry(routes.WaitNewer(route.version(), route.RetryAt()));
//   }
//
// Thread safety: one read, one thread at a time (a driver's callbacks run one after another).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/router/routing_table.h"

namespace tally::router {

// How long a lag-bounded read waits for one copy when another could answer instead.
inline constexpr absl::Duration kAttemptTimeout = absl::Milliseconds(500);
// How long a copy that failed as unreachable is tried last by lag-bounded reads.
inline constexpr absl::Duration kUnreachableFor = absl::Seconds(2);
// How long a read waits for a newer routing table before trying again anyway.
inline constexpr absl::Duration kRetrySlice = absl::Milliseconds(200);

class ReadRoute {
 public:
  // One call to make: `client` (kept alive by the route's table) within `deadline`.
  struct Attempt {
    ShardClient* client;
    absl::Time deadline;
  };

  // `scenario` must outlive the route; `table` is never null.
  ReadRoute(const std::string& scenario, int32_t partition, int64_t max_lag, absl::Time deadline,
            std::shared_ptr<const RoutingTable> table);

  // The next copy to try in the current table; nullopt once they were all tried.
  std::optional<Attempt> Next();
  // True if `status` (of the call `attempt` named) is the read's answer, success or an error the
  // caller must see; false if the read goes on with the next copy.
  bool Settled(const Attempt& attempt, const absl::Status& status);
  // True once the deadline has passed: the read ends with LastError().
  bool Expired() const { return absl::Now() >= deadline_; }
  // Why the read failed: the last copy's error, or why no copy could be tried.
  absl::Status LastError() const;

  // The version of the current table, and until when to wait for a newer one before Retry.
  uint64_t version() const { return table_->version(); }
  absl::Time RetryAt() const { return std::min(deadline_, absl::Now() + kRetrySlice); }
  // Starts over with the copies of `table` (the latest, never null).
  void Retry(std::shared_ptr<const RoutingTable> table);

 private:
  void PlanCopies();

  const std::string& scenario_;
  const int32_t partition_;
  const int64_t max_lag_;
  const absl::Time deadline_;
  std::shared_ptr<const RoutingTable> table_;  // keeps the clients in `copies_` alive
  // The copies to try, in order. Inline: no allocation per read.
  absl::InlinedVector<ShardClient*, 4> copies_;
  size_t next_ = 0;
  absl::Status last_;
};

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_READ_ROUTE_H_
