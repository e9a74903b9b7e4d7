#include "server/router/router.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "server/config/config.h"
#include "server/kafka/partitioner.h"
#include "server/router/requests.h"
#include "server/router/tokens.h"

namespace tally::router {
namespace {

using google::protobuf::util::TimeUtil;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// `status` with its message prefixed, e.g. by "reports[3]." to name the report it is about.
absl::Status Prefixed(const absl::Status& status, absl::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

// The writes of one ReportBatch: each report's callback fills its own slot, and the last one to
// finish answers the batch. Callbacks run on the sink's thread, or inline on the caller's when
// the sink refuses at once, so the count is atomic and each slot has one writer.
class BatchWrites {
 public:
  BatchWrites(size_t size, Router::BatchDone done)
      : slots_(size), remaining_(size), done_(std::move(done)) {}

  void Done(size_t index, int32_t partition, absl::StatusOr<int64_t> offset) {
    slots_[index] =
        offset.ok() ? absl::StatusOr<std::string>(EncodeWriteToken(WriteToken{partition, *offset}))
                    : absl::StatusOr<std::string>(offset.status());
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::vector<std::string> tokens;
    tokens.reserve(slots_.size());
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i].ok()) {
        return done_(Prefixed(slots_[i].status(), absl::StrCat("reports[", i, "]: ")));
      }
      tokens.push_back(std::move(*slots_[i]));
    }
    done_(std::move(tokens));
  }

 private:
  std::vector<absl::StatusOr<std::string>> slots_;
  std::atomic<size_t> remaining_;
  const Router::BatchDone done_;
};

}  // namespace

Router::Router(const config::v1::Config& config, ReportSink& sink, const RoutingSource& routes)
    : config_(config), sink_(sink), routes_(routes), waiter_(routes) {
  std::vector<std::string> names;
  for (const config::v1::Scenario& s : config_.scenarios()) {
    scenarios_[s.name()] = Scenario{&s, config::ReportsTopic(config_, s.name())};
    names.push_back(s.name());
  }
  std::sort(names.begin(), names.end());
  scenario_names_ = absl::StrJoin(names, ", ");
}

absl::StatusOr<const Router::Scenario*> Router::FindScenario(const std::string& name) const {
  if (name.empty()) return absl::InvalidArgumentError("scenario: must not be empty");
  auto it = scenarios_.find(name);
  if (it == scenarios_.end()) {
    return absl::NotFoundError(absl::StrCat("scenario: \"", name.substr(0, 128),
                                            "\" is not served here (scenarios: ", scenario_names_,
                                            ")"));
  }
  return &it->second;
}

absl::StatusOr<int32_t> Router::PartitionOf(const std::string& scenario,
                                            const std::string& object_key) const {
  auto s = FindScenario(scenario);
  if (!s.ok()) return s.status();
  return kafka::PartitionFor(object_key, (*s)->config->partitions());
}

void Router::Report(const v1::ReportStateRequest& request, WriteDone done) {
  auto scenario = FindScenario(request.scenario());
  if (!scenario.ok()) return done(scenario.status());
  Write(**scenario, ReportRecordFor(request, *(*scenario)->config, NowMs()), std::move(done));
}

void Router::ReportBatch(const v1::ReportBatchRequest& request, BatchDone done) {
  const int size = request.reports_size();
  if (size == 0) return done(absl::InvalidArgumentError("reports: must not be empty"));
  if (size > kMaxBatchReports) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("reports: ", size, " reports, the limit is ", kMaxBatchReports)));
  }
  struct Write {
    const Scenario* scenario;
    int32_t partition;
    records::v1::ReportRecord record;
  };
  std::vector<Write> writes;
  writes.reserve(size);
  const int64_t now_ms = NowMs();
  for (int i = 0; i < size; ++i) {
    const v1::ReportStateRequest& report = request.reports(i);
    auto scenario = FindScenario(report.scenario());
    absl::StatusOr<records::v1::ReportRecord> record =
        scenario.ok() ? ReportRecordFor(report, *(*scenario)->config, now_ms)
                      : absl::StatusOr<records::v1::ReportRecord>(scenario.status());
    if (!record.ok()) return done(Prefixed(record.status(), absl::StrCat("reports[", i, "].")));
    const int32_t partition =
        kafka::PartitionFor(record->object_key(), (*scenario)->config->partitions());
    writes.push_back(Write{*scenario, partition, *std::move(record)});
  }
  auto batch = std::make_shared<BatchWrites>(writes.size(), std::move(done));
  std::string value;
  for (size_t i = 0; i < writes.size(); ++i) {
    const Write& w = writes[i];
    w.record.SerializeToString(&value);
    sink_.Send(w.scenario->reports_topic, w.partition, w.record.object_key(), value,
               [batch, i, partition = w.partition](absl::StatusOr<int64_t> offset) {
                 batch->Done(i, partition, std::move(offset));
               });
  }
}

void Router::Set(const v1::SetStateRequest& request, WriteDone done) {
  auto scenario = FindScenario(request.scenario());
  if (!scenario.ok()) return done(scenario.status());
  Write(**scenario, SetRecordFor(request, NowMs()), std::move(done));
}

void Router::Purge(const v1::PurgeStateRequest& request, WriteDone done) {
  auto scenario = FindScenario(request.scenario());
  if (!scenario.ok()) return done(scenario.status());
  Write(**scenario, PurgeRecordFor(request, NowMs()), std::move(done));
}

void Router::Write(const Scenario& scenario, absl::StatusOr<records::v1::ReportRecord> record,
                   WriteDone done) {
  if (!record.ok()) return done(record.status());
  const int32_t partition =
      kafka::PartitionFor(record->object_key(), scenario.config->partitions());
  sink_.Send(scenario.reports_topic, partition, record->object_key(), record->SerializeAsString(),
             [partition, done = std::move(done)](absl::StatusOr<int64_t> offset) {
               if (!offset.ok()) return done(offset.status());
               done(EncodeWriteToken(WriteToken{partition, *offset}));
             });
}

template <typename Response>
absl::StatusOr<Response> Router::Route(
    const std::string& scenario, int32_t partition, int64_t max_lag, absl::Time deadline,
    absl::FunctionRef<absl::StatusOr<Response>(ShardClient&, absl::Time)> read) const {
  ReadRoute route(scenario, partition, max_lag, deadline, routes_.Current());
  while (true) {
    while (std::optional<ReadRoute::Attempt> attempt = route.Next()) {
      absl::StatusOr<Response> response = read(*attempt->client, attempt->deadline);
      if (route.Settled(*attempt, response.status())) return response;
    }
    if (route.Expired()) return route.LastError();
    route.Retry(routes_.WaitNewer(route.version(), route.RetryAt()));
  }
}

namespace {

// Route's asynchronous driver: each call's completion tries the next copy; a read that tried
// every copy parks in the TableWaiter instead of waiting in WaitNewer. One call at a time, so
// the route needs no lock. Keeps itself alive (every pending callback holds it) until `done`.
template <typename Request, typename Response>
class AsyncRead final : public std::enable_shared_from_this<AsyncRead<Request, Response>> {
 public:
  using Start = void (ShardClient::*)(const Request&, absl::Time, ShardClient::Done<Response>);

  AsyncRead(Request request, int64_t max_lag, absl::Time deadline, const RoutingSource& routes,
            TableWaiter& waiter, Start start, Router::ReadDone<Response> done)
      : request_(std::move(request)),
        routes_(routes),
        waiter_(waiter),
        start_(start),
        done_(std::move(done)),
        route_(request_.scenario(), request_.partition(), max_lag, deadline, routes.Current()) {}

  void TryNext() {
    std::optional<ReadRoute::Attempt> attempt = route_.Next();
    if (!attempt.has_value()) return Park();
    // Inline completions recurse here at most once per copy of the table: parking never
    // resumes inline.
    (attempt->client->*start_)(
        request_, attempt->deadline,
        [self = this->shared_from_this(), attempt = *attempt](absl::StatusOr<Response> response) {
          if (self->route_.Settled(attempt, response.status())) {
            return self->done_(std::move(response));
          }
          self->TryNext();
        });
  }

 private:
  void Park() {
    if (route_.Expired()) return done_(route_.LastError());
    waiter_.Park(route_.version(), route_.RetryAt(), [self = this->shared_from_this()](bool retry) {
      if (!retry) return self->done_(self->route_.LastError());
      self->route_.Retry(self->routes_.Current());
      self->TryNext();
    });
  }

  const Request request_;
  const RoutingSource& routes_;
  TableWaiter& waiter_;
  const Start start_;
  const Router::ReadDone<Response> done_;
  ReadRoute route_;  // refers to request_.scenario()
};

}  // namespace

template <typename Request, typename Response>
void Router::RouteAsync(Request request, int64_t max_lag, absl::Time deadline,
                        void (ShardClient::*start)(const Request&, absl::Time,
                                                   ShardClient::Done<Response>),
                        ReadDone<Response> done) const {
  std::make_shared<AsyncRead<Request, Response>>(std::move(request), max_lag, deadline, routes_,
                                                 waiter_, start, std::move(done))
      ->TryNext();
}

void Router::Get(const v1::GetStateRequest& request, absl::Time deadline,
                 ReadDone<v1::GetStateResponse> done) const {
  auto scenario = FindScenario(request.scenario());
  if (!scenario.ok()) return done(scenario.status());
  if (absl::Status s = CheckObjectKey(request.object_key()); !s.ok()) return done(s);
  if (request.max_lag() < 0) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("max_lag: must be >= 0 (0: the active copy only), got ", request.max_lag())));
  }
  const int32_t partition =
      kafka::PartitionFor(request.object_key(), (*scenario)->config->partitions());
  internal::v1::ShardGetRequest shard_request;
  shard_request.set_scenario(request.scenario());
  shard_request.set_partition(partition);
  shard_request.set_object_key(request.object_key());
  shard_request.set_min_offset(-1);
  shard_request.set_max_lag(request.max_lag());
  if (!request.min_token().empty()) {
    auto token = ParseWriteToken(request.min_token(), "min_token");
    if (!token.ok()) return done(token.status());
    if (token->partition != partition) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "min_token: names a write to partition ", token->partition, " but object_key \"",
          request.object_key().substr(0, 64), "\" is in partition ", partition,
          " (pass the token of a write to this object)")));
    }
    shard_request.set_min_offset(token->offset);
  }
  // A read after a write (min_token) waits on the active copy: standbys do not wait for offsets.
  const int64_t max_lag = shard_request.min_offset() >= 0 ? 0 : request.max_lag();
  RouteAsync<internal::v1::ShardGetRequest, internal::v1::ShardGetResponse>(
      std::move(shard_request), max_lag, deadline, &ShardClient::GetAsync,
      [scenario = request.scenario(), object_key = request.object_key(),
       done = std::move(done)](absl::StatusOr<internal::v1::ShardGetResponse> shard_response) {
        if (!shard_response.ok()) return done(shard_response.status());
        if (!shard_response->found()) {
          return done(absl::NotFoundError(absl::StrCat("object_key: \"", object_key.substr(0, 64),
                                                       "\" has no state in scenario ", scenario)));
        }
        v1::GetStateResponse response;
        *response.mutable_state() = std::move(*shard_response->mutable_state());
        response.set_served_by(shard_response->node_id());
        response.set_lag(shard_response->lag());
        done(std::move(response));
      });
}

absl::StatusOr<v1::ListStateResponse> Router::List(const v1::ListStateRequest& request,
                                                   absl::Time deadline) const {
  auto scenario = FindScenario(request.scenario());
  if (!scenario.ok()) return scenario.status();
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: must be in [0, ", kMaxPageSize,
                                                   "] (0: ", kDefaultPageSize, "), got ",
                                                   request.page_size()));
  }
  if (request.max_lag() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_lag: must be >= 0 (0: the active copy only), got ", request.max_lag()));
  }
  if (request.prefix().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("prefix: must not contain NUL");
  }
  const size_t page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  std::string after;
  if (!request.page_token().empty()) {
    auto key = ParsePageToken(request.page_token());
    if (!key.ok()) return key.status();
    if (!absl::StartsWith(*key, request.prefix())) {
      return absl::InvalidArgumentError(
          "page_token: belongs to a listing with another prefix (keep the prefix while paging)");
    }
    after = std::move(*key);
  }

  // Every partition scans up to `limit` keys after `after`; the merge may return keys only up to
  // the smallest last key among partitions that stopped at the limit, since the others' keys
  // beyond it are known and theirs are not. Keys returned are strictly increasing across pages,
  // so paging never repeats a key and never skips one that existed throughout. A page is never
  // empty before the end: the partition that set the bound gave `limit` keys up to it.
  const int32_t partitions = (*scenario)->config->partitions();
  // Keys spread evenly over partitions (murmur2), so each holds about page_size / partitions of
  // the next page_size keys: asking every partition for a whole page read, serialized and sent
  // `partitions` times the states a page returns (6x in the listing benchmark). Twice its share
  // fills the page nearly always; a skewed prefix gets a shorter page, not a wrong one.
  const size_t limit = std::min(
      page_size, std::max(kMinScanPerPartition, (2 * page_size + partitions - 1) / partitions));
  std::vector<internal::v1::ShardScanResponse> pages;
  pages.reserve(partitions);
  std::optional<std::string> bound;
  for (int32_t partition = 0; partition < partitions; ++partition) {
    internal::v1::ShardScanRequest scan;
    scan.set_scenario(request.scenario());
    scan.set_partition(partition);
    scan.set_prefix(request.prefix());
    scan.set_after(after);
    scan.set_limit(static_cast<int32_t>(limit));
    scan.set_max_lag(request.max_lag());
    auto page = Route<internal::v1::ShardScanResponse>(
        request.scenario(), partition, request.max_lag(), deadline,
        [&](ShardClient& client, absl::Time attempt_deadline) {
          return client.Scan(scan, attempt_deadline);
        });
    if (!page.ok()) return page.status();
    if (page->more() && (!bound.has_value() || page->last_key() < *bound)) {
      bound = page->last_key();
    }
    pages.push_back(*std::move(page));
  }
  // A key lives in one partition, so merging the pages is sorting their states by key.
  std::vector<v1::ObjectState*> merged;
  for (internal::v1::ShardScanResponse& page : pages) {
    for (v1::ObjectState& state : *page.mutable_states()) merged.push_back(&state);
  }
  std::sort(merged.begin(), merged.end(), [](const v1::ObjectState* a, const v1::ObjectState* b) {
    return a->object_key() < b->object_key();
  });
  v1::ListStateResponse response;
  for (const internal::v1::ShardScanResponse& page : pages) {
    response.set_lag(std::max(response.lag(), page.lag()));
  }
  bool remaining = false;
  for (v1::ObjectState* state : merged) {
    if (bound.has_value() && state->object_key() > *bound) {
      remaining = true;
      break;
    }
    if (static_cast<size_t>(response.states_size()) == page_size) {
      remaining = true;
      break;
    }
    *response.add_states() = std::move(*state);
  }
  if (static_cast<size_t>(response.states_size()) == page_size &&
      (remaining || bound.has_value())) {
    response.set_next_page_token(
        EncodePageToken(response.states(response.states_size() - 1).object_key()));
  } else if (bound.has_value()) {
    response.set_next_page_token(EncodePageToken(*bound));
  }
  return response;
}

v1::DescribeClusterResponse Router::Describe() const {
  std::shared_ptr<const RoutingTable> table = routes_.Current();
  v1::DescribeClusterResponse response;
  for (const auto& node : table->nodes()) {
    v1::NodeInfo* info = response.add_nodes();
    info->set_id(node->member.node_id());
    info->set_endpoint(node->member.endpoint());
    info->set_alive(node->alive);
    *info->mutable_last_heartbeat() =
        TimeUtil::MillisecondsToTimestamp(node->member.heartbeat_ms());
  }
  for (const config::v1::Scenario& s : config_.scenarios()) {
    for (int32_t partition = 0; partition < s.partitions(); ++partition) {
      v1::PartitionInfo* info = response.add_partitions();
      info->set_scenario(s.name());
      info->set_partition(partition);
      const PartitionRoute* route = table->Find(s.name(), partition);
      if (route == nullptr) continue;
      const Copy* main = nullptr;
      if (route->active.has_value()) {
        main = &*route->active;
        info->set_active_node(main->node->member.node_id());
        info->set_status(v1::ACTIVE);
      } else if (!route->restoring.empty()) {
        main = &route->restoring.front();
        info->set_status(v1::RESTORING);
      } else if (!route->standbys.empty()) {
        main = &route->standbys.front();
        info->set_status(v1::STANDBY);
      }
      for (const Copy& standby : route->standbys) {
        info->add_standbys(standby.node->member.node_id());
      }
      auto add_copy = [info](const Copy& copy, v1::PartitionStatus status) {
        v1::CopyInfo* out = info->add_copies();
        out->set_node(copy.node->member.node_id());
        out->set_status(status);
        out->set_applied_offset(copy.state.applied_offset());
        out->set_end_offset(copy.state.end_offset());
        out->set_lag(copy.lag());
        *out->mutable_since() = TimeUtil::MillisecondsToTimestamp(copy.state.since_ms());
      };
      if (route->active.has_value()) add_copy(*route->active, v1::ACTIVE);
      for (const Copy& copy : route->standbys) add_copy(copy, v1::STANDBY);
      for (const Copy& copy : route->restoring) add_copy(copy, v1::RESTORING);
      if (main != nullptr) {
        info->set_applied_offset(main->state.applied_offset());
        info->set_end_offset(main->state.end_offset());
        info->set_lag(main->lag());
      }
    }
  }
  return response;
}

absl::StatusOr<int32_t> Router::CheckWatch(const v1::WatchStateRequest& request) const {
  auto scenario = FindScenario(request.scenario());
  if (!scenario.ok()) return scenario.status();
  if (!request.object_key().empty()) {
    if (!request.prefix().empty()) {
      return absl::InvalidArgumentError(
          "object_key: give object_key (one object) or prefix (many), not both");
    }
    if (absl::Status s = CheckObjectKey(request.object_key()); !s.ok()) return s;
  }
  if (request.prefix().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("prefix: must not contain NUL");
  }
  if (request.send_initial() && !request.resume_token().empty()) {
    return absl::InvalidArgumentError(
        "send_initial: cannot be combined with resume_token (a resumed watch continues where it "
        "was; list again with send_initial and no token)");
  }
  return (*scenario)->config->partitions();
}

absl::StatusOr<int64_t> Router::Snapshot(
    const internal::v1::ShardSnapshotRequest& request, absl::Time deadline,
    const std::function<bool(const internal::v1::ShardSnapshotResponse&)>& emit) const {
  // A retry after a partial snapshot must not repeat states: the caller sees each chunk once,
  // so only a snapshot that failed before its first chunk is retried.
  bool emitted = false;
  int64_t changes_offset = -1;
  auto status =
      Route<bool>(request.scenario(), request.partition(), /*max_lag=*/0, deadline,
                  [&](ShardClient& client, absl::Time) -> absl::StatusOr<bool> {
                    absl::Status s = client.Snapshot(
                        request, deadline, [&](const internal::v1::ShardSnapshotResponse& chunk) {
                          emitted = true;
                          if (chunk.done()) changes_offset = chunk.changes_offset();
                          return emit(chunk);
                        });
                    // Not retryable once part of it went out (CANCELLED is not retried by Route).
                    if (!s.ok() && emitted) return absl::CancelledError(s.message());
                    if (!s.ok()) return s;
                    return true;
                  });
  if (!status.ok() && emitted) {
    return absl::UnavailableError(absl::StrCat("the snapshot of partition ", request.partition(),
                                               " was interrupted (", status.status().message(),
                                               "); watch again"));
  }
  if (!status.ok()) return status.status();
  return changes_offset;
}

}  // namespace tally::router
