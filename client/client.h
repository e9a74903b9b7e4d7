#ifndef TALLY_CLIENT_CLIENT_H_
#define TALLY_CLIENT_CLIENT_H_

// tally::Client: the C++ client of Tally's public API (tally.v1.StateService and AdminService,
// proto/tally/v1/state.proto), for services that read shared state, agents that report it, and
// tools such as tallyctl.
//
//   auto client = tally::Client::Create({"10.0.0.1:7070", "10.0.0.2:7070"});
//   absl::StatusOr<std::string> token = (*client)->Report("demo", "site-1", "agent-7", "attack");
//   auto got = (*client)->Get("demo", "site-1", {.min_token = *token});  // read-your-writes
//   tally::StateList list = (*client)->List("demo", "site-");
//   for (const tally::v1::ObjectState& s : list) { ... }
//   if (!list.status().ok()) { ... }
//
// Every call has a deadline (its own timeout, else ClientOptions::default_timeout) that covers
// all its attempts. A call that fails with UNAVAILABLE is retried on the next router endpoint
// after an exponential backoff with jitter (RetryPolicy), while attempts and the deadline last;
// the client then sticks to the endpoint that answered. Every other code is the answer and is
// returned as it came, as an absl::Status with the same code and the router's message (which
// names the offending field for INVALID_ARGUMENT):
//   NOT_FOUND          unknown scenario, or an object with no state;
//   INVALID_ARGUMENT   bad request; do not retry it unchanged;
//   UNAVAILABLE        no router answered within the attempts and deadline; retry later;
//   DEADLINE_EXCEEDED  the deadline passed (e.g. min_token not applied in time);
//   FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, ...: as the router says.
// Retried writes are safe: a report (each report of a batch too) replaces its agent's previous
// report of the object, and a repeated Set or Purge has the effect of one; the token is that of
// the write that answered.
//
// Thread safety: a Client may be used from any number of threads at once. StateList and
// WatchStream objects are used by one thread at a time (WatchStream::Cancel excepted) and must not
// outlive the Client that made them.

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/retry.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"
#include "tally/v1/state.grpc.pb.h"

namespace tally {

// Makes the channel to one router endpoint (host:port). The seam where tests plug in in-process
// servers and deployments plug in TLS credentials. Called once per endpoint, in Client::Create.
using ChannelFactory =
    std::function<std::shared_ptr<grpc::ChannelInterface>(const std::string& endpoint)>;

// Plaintext channels that reconnect quickly (100 ms, backing off to 5 s) to a router that comes
// back, and detect a dead connection under a long watch by keepalive pings every 5 minutes
// (gRPC servers' default minimum ping interval, so routers do not refuse them).
ChannelFactory InsecureChannelFactory();
// The same over TLS: routers' certificates are verified against `ca_pem` (empty: the system's
// roots); with `cert_pem` and `key_pem` the client presents a certificate (mutual TLS).
ChannelFactory TlsChannelFactory(std::string ca_pem, std::string cert_pem = "",
                                 std::string key_pem = "");

struct ClientOptions {
  // Sent as `authorization: Bearer <token>` on every call. Empty: no authorization header.
  std::string bearer_token = "";
  // The deadline of a call that gives no timeout of its own. Must be positive.
  absl::Duration default_timeout = absl::Seconds(10);
  RetryPolicy retry = {};
  // Null: InsecureChannelFactory().
  ChannelFactory channel_factory = {};
  // How the client waits between attempts. Null: the real clock. A seam for tests.
  std::function<void(absl::Duration)> sleep = {};
};

// For calls that take nothing else.
struct CallOptions {
  absl::Duration timeout = absl::ZeroDuration();  // zero: ClientOptions::default_timeout
};

struct GetOptions {
  // A token from Report/Set/Purge: the router waits (within the deadline) until that write is
  // applied, so the answer reflects it (read-your-writes). Empty: no wait.
  std::string min_token = "";
  // 0: only the partition's active owner answers; > 0: a standby at most this many records
  // behind may answer (while the owner is down or restoring).
  int64_t max_lag = 0;
  absl::Duration timeout = absl::ZeroDuration();
};

struct ListOptions {
  int32_t page_size = 0;  // states per ListState call; 0: the router's default (100), max 1000
  int64_t max_lag = 0;    // as in GetOptions
  // The deadline of each page's call (a long listing may take longer in total).
  absl::Duration timeout = absl::ZeroDuration();
  // Start after this position (a ListStateResponse.next_page_token). Empty: from the start.
  std::string page_token = "";
};

// What a watch follows: one object, every object under a prefix, or (both empty) every object of
// the scenario.
struct WatchTarget {
  std::string object_key = "";
  std::string prefix = "";
  static WatchTarget Key(std::string key) { return {std::move(key), ""}; }
  static WatchTarget Prefix(std::string prefix) { return {"", std::move(prefix)}; }
  static WatchTarget All() { return {}; }
};

struct WatchOptions {
  // First stream the current state of every watched object (`initial` events, then one
  // `snapshot_done`), then every change after that snapshot with no gap and no duplicate.
  bool send_initial = false;
  // Continue after the event that carried this token (WatchStream::resume_token() of an earlier
  // watch). Empty: changes from now on.
  std::string resume_token = "";
  // The whole watch's deadline, resumes included. Infinite: until cancelled or failed.
  absl::Duration timeout = absl::InfiniteDuration();
};

class Client;

// All states of a scenario under a prefix, in key order, across all pages: an input range whose
// pages are fetched lazily, one ListState call (with its own deadline and retries) at a time, as
// iteration reaches them. Iterate it once:
//   StateList list = client.List("demo", "site-");
//   for (const v1::ObjectState& s : list) ...
//   if (!list.status().ok()) ...   // iteration stopped early because a page failed
// A page that fails ends the iteration; status() says why. States written during a listing may or
// may not be seen (each page is read at its own moment, like etcd's paginated Range).
class StateList {
 public:
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = v1::ObjectState;
    using difference_type = std::ptrdiff_t;
    using pointer = const v1::ObjectState*;
    using reference = const v1::ObjectState&;

    Iterator() = default;
    reference operator*() const { return list_->Current(); }
    pointer operator->() const { return &list_->Current(); }
    Iterator& operator++() {
      list_->Advance();
      return *this;
    }
    void operator++(int) { list_->Advance(); }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) { return it.AtEnd(); }

   private:
    friend class StateList;
    bool AtEnd() const { return list_ == nullptr || list_->done_; }
    explicit Iterator(StateList* list) : list_(list) {}
    StateList* list_ = nullptr;
  };

  StateList(StateList&&) = default;
  StateList& operator=(StateList&&) = default;

  // Fetches the first page (once; a second call continues where iteration is).
  Iterator begin();
  std::default_sentinel_t end() const { return {}; }

  // OK while iterating and after reaching the end; otherwise the error of the page that failed.
  const absl::Status& status() const { return status_; }
  // The token to continue after the last page fetched ("" once the end was reached).
  const std::string& next_page_token() const { return page_.next_page_token(); }
  // ListState calls made so far.
  int pages_fetched() const { return pages_fetched_; }

 private:
  friend class Client;
  StateList(const Client* client, v1::ListStateRequest request, absl::Duration timeout)
      : client_(client), request_(std::move(request)), timeout_(timeout) {}
  const v1::ObjectState& Current() const { return page_.states(index_); }
  // Moves to the next state, fetching pages (skipping empty ones) as needed.
  void Advance();
  void FetchUntilNonEmpty();

  const Client* client_;
  v1::ListStateRequest request_;
  absl::Duration timeout_;
  v1::ListStateResponse page_;
  int index_ = 0;
  bool started_ = false;
  bool done_ = false;
  int pages_fetched_ = 0;
  absl::Status status_;
};

// A watch (WatchState stream) that survives disconnects: when the stream breaks (UNAVAILABLE, or
// the router ends it without an error), the client opens it again on the next router endpoint,
// after a backoff, with the resume_token of the last event it delivered — the router's contract
// makes that continue with no gap and no duplicate. The request is otherwise unchanged, except
// that send_initial is dropped once the snapshot is complete (snapshot_done delivered). A break
// during the initial snapshot, once some `initial` events were delivered, cannot be resumed
// (those events carry no resume token): the watch ends with OUT_OF_RANGE, so the caller lists
// again. (A break before the first event just opens the watch again.)
// RetryPolicy::max_attempts bounds consecutive failed attempts (attempts that deliver no
// event); then Next returns UNAVAILABLE.
//
// Errors that end the watch (Next returns them, then keeps returning the same error):
//   OUT_OF_RANGE        the resume token is older than the changes the router still has, or
//                       the stream broke during the initial snapshot: the caller must re-list
//                       (watch again with send_initial) and go on from there;
//   RESOURCE_EXHAUSTED  the router closed the watch because the caller read too slowly (or a
//                       limit was hit); watching again from resume_token() continues where it
//                       stopped, with no gap;
//   CANCELLED           after Cancel();
//   DEADLINE_EXCEEDED   WatchOptions::timeout passed;
//   UNAVAILABLE         no router answered within max_attempts consecutive attempts;
//   anything else the router answered (NOT_FOUND scenario, INVALID_ARGUMENT, ...).
//
// Next is called by one thread at a time; Cancel and resume_token from any thread.
class WatchStream {
 public:
  ~WatchStream();

  // Blocks until the next event (change, initial, snapshot_done or progress) or the end.
  absl::StatusOr<v1::WatchStateResponse> Next();
  // Ends the watch: a blocked or later Next returns CANCELLED. Safe from any thread.
  void Cancel();
  // The resume token of the last event Next returned that carried one (the one the watch was
  // started with before that).
  std::string resume_token() const;
  // How many times the stream was opened again after a break.
  int resumes() const;

 private:
  friend class Client;
  WatchStream(const Client* client, v1::WatchStateRequest request, absl::Time deadline);
  // Opens the stream on the current endpoint; false if cancelled.
  bool Open();
  // Waits `delay`, or less if cancelled.
  void Backoff(absl::Duration delay);

  // Constant after construction.
  const Client* const client_;
  const v1::WatchStateRequest request_;
  const absl::Time deadline_;

  // Only touched by the thread calling Next.
  std::unique_ptr<grpc::ClientReaderInterface<v1::WatchStateResponse>> reader_;
  size_t endpoint_ = 0;
  int failures_ = 0;        // consecutive attempts that delivered nothing
  bool delivered_ = false;  // whether the open stream delivered an event
  bool snapshot_done_ = false;
  bool initial_delivered_ = false;
  absl::Status final_;

  mutable absl::Mutex mu_;
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::string resume_token_ ABSL_GUARDED_BY(mu_);
  int resumes_ ABSL_GUARDED_BY(mu_) = 0;
};

class Client {
 public:
  // A client of the routers at `endpoints` (host:port, at least one; calls start with the first).
  // INVALID_ARGUMENT if the endpoints or options are unusable. Channels are made here, once per
  // endpoint, and reused by every call; they connect lazily.
  static absl::StatusOr<std::unique_ptr<Client>> Create(std::vector<std::string> endpoints,
                                                        ClientOptions options = {});

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Records `request` (an agent's report on an object); the write token once it is durably in
  // Kafka.
  absl::StatusOr<std::string> Report(const v1::ReportStateRequest& request,
                                     CallOptions options = {}) const;
  // The same for the common case: no attributes, the scenario's default TTL, observed now.
  absl::StatusOr<std::string> Report(const std::string& scenario, const std::string& object_key,
                                     const std::string& agent_id, const std::string& state,
                                     CallOptions options = {}) const;
  // Records the reports of `request` (1 to 1000) in one call, which costs the router far less
  // than one call a report; their write tokens, in the order of request.reports, once every one
  // is durably in Kafka. A bad report refuses the whole batch and nothing is written:
  // INVALID_ARGUMENT naming it and its field (`reports[3].state: must not be empty`; NOT_FOUND
  // for an unknown scenario). With auth on, a report whose agent_id is not the caller's principal
  // refuses the batch (PERMISSION_DENIED). A failed write fails the call with UNAVAILABLE (some
  // reports may be written), retried like any call: a retried batch is safe, since each report
  // replaces its agent's vote. Routers older than ReportBatch answer UNIMPLEMENTED (not retried):
  // send those reports with Report.
  absl::StatusOr<std::vector<std::string>> ReportBatch(const v1::ReportBatchRequest& request,
                                                       CallOptions options = {}) const;

  // The computed state of one object (with the node that served it and its lag). NOT_FOUND if
  // the object has no state.
  absl::StatusOr<v1::GetStateResponse> Get(const std::string& scenario,
                                           const std::string& object_key,
                                           GetOptions options = {}) const;

  // Every state under `prefix` (empty: all), in key order; see StateList.
  StateList List(const std::string& scenario, const std::string& prefix = "",
                 ListOptions options = {}) const;
  // One page, for callers that keep page tokens themselves.
  absl::StatusOr<v1::ListStateResponse> ListPage(const v1::ListStateRequest& request,
                                                 CallOptions options = {}) const;

  // Operator writes, processed like agents' reports; each returns its write token.
  // Set: with pin, `state` holds whatever the agents say until unpinned; without pin, `state`
  // replaces the computed state until the next update, and an empty `state` unpins and lets the
  // votes decide again.
  absl::StatusOr<std::string> Set(const v1::SetStateRequest& request,
                                  CallOptions options = {}) const;
  // Removes the object, its votes and its pin.
  absl::StatusOr<std::string> Purge(const std::string& scenario, const std::string& object_key,
                                    const std::string& reason = "", CallOptions options = {}) const;
  // Nodes, partitions, owners, standbys, lag and restore progress.
  absl::StatusOr<v1::DescribeClusterResponse> Describe(CallOptions options = {}) const;

  // Pull-style watch; see WatchStream. Never fails here: errors come from Next.
  std::unique_ptr<WatchStream> Watch(const std::string& scenario, const WatchTarget& target,
                                     WatchOptions options = {}) const;
  // Callback-style watch on the calling thread: calls `on_event` for every event until it returns
  // false (then OK) or the watch ends with an error (returned, as WatchStream::Next's).
  absl::Status Watch(const std::string& scenario, const WatchTarget& target, WatchOptions options,
                     const std::function<bool(const v1::WatchStateResponse&)>& on_event) const;

  const std::vector<std::string>& endpoints() const { return endpoints_; }

 private:
  friend class StateList;
  friend class WatchStream;

  struct Endpoint {
    std::string address;
    std::unique_ptr<v1::StateService::StubInterface> state;
    std::unique_ptr<v1::AdminService::StubInterface> admin;
  };
  template <typename Response>
  using Rpc = std::function<grpc::Status(const Endpoint&, grpc::ClientContext*, Response*)>;

  Client(std::vector<std::string> addresses, ClientOptions options,
         std::vector<Endpoint> endpoints);

  // Runs `rpc` with the retries and deadline described at the top of this file.
  template <typename Response>
  absl::StatusOr<Response> Call(const char* method, absl::Duration timeout,
                                const Rpc<Response>& rpc) const;
  // A context with `deadline` and the authorization header.
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Time deadline) const;
  absl::Duration Timeout(absl::Duration requested) const;
  absl::Duration NextBackoff(int retry) const;
  void Sleep(absl::Duration d) const;
  // The endpoint calls start with, and moving on from one that failed.
  size_t current() const;
  void Failed(size_t endpoint) const;
  void Answered(size_t endpoint) const;

  // Constant after construction.
  const std::vector<std::string> endpoints_;
  const ClientOptions options_;
  const std::vector<Endpoint> stubs_;

  mutable absl::Mutex mu_;
  mutable size_t current_ ABSL_GUARDED_BY(mu_) = 0;
  mutable absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
};

// The absl::Status for a grpc::Status: the same code and message, the message prefixed with the
// endpoint that gave it when `endpoint` is not empty.
absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& endpoint = "");

}  // namespace tally

#endif  // TALLY_CLIENT_CLIENT_H_
