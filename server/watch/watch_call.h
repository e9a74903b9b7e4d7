#ifndef TALLY_SERVER_WATCH_WATCH_CALL_H_
#define TALLY_SERVER_WATCH_WATCH_CALL_H_

// WatchState on gRPC's completion-queue API, over several queues with a thread each, instead of
// the callback API the other methods use.
//
// Why: Debian's gRPC is built without NDEBUG, and a debug build checks each completion's tag
// against every operation pending on its queue, one by one. The callback API has one queue per
// process, and a watch stream keeps an operation pending on it for its whole life, so with
// 10,000 watchers every completion of the process — each delivery, and each GetState or
// ReportState too — scanned 10,000 entries (a quarter of the router's CPU while it fanned
// events out). Here each queue holds its share of the streams only, and the other methods'
// queue none of them.
//
// WatchServer keeps one WatchState request pending per queue and hands each new call to its
// handler, on that queue's thread. The handler either finishes the call (a refusal) or binds a
// WatchCallbacks to it. A call's callbacks run on its queue's one thread, one at a time.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "grpcpp/support/async_stream.h"

namespace tally::watch {

// What a stream bound to a WatchCall hears (gRPC's ServerWriteReactor's callbacks).
class WatchCallbacks {
 public:
  virtual ~WatchCallbacks() = default;
  virtual void OnWriteDone(bool ok) = 0;
  // The client went away (or the server is shutting down). The stream must Finish.
  virtual void OnCancel() = 0;
  // The last callback: the call is over and the stream may go; the call goes after it returns.
  virtual void OnDone() = 0;
};

class WatchCall {
 public:
  grpc::ServerContext& context() { return context_; }
  // One write at a time: the next after OnWriteDone. `buffer` must stay until then.
  void StartWrite(const grpc::ByteBuffer* buffer);
  // Once; waits for a write in flight to end first. Thread-safe with StartWrite.
  void Finish(grpc::Status status);
  // Binds `callbacks` (before the handler returns, so that no completion of the call is missed).
  void Bind(WatchCallbacks* callbacks) { callbacks_ = callbacks; }

 private:
  friend class WatchServer;
  enum class Kind { kAccept, kWrite, kFinish, kDone };
  struct Tag {
    WatchCall* call;
    Kind kind;
  };

  WatchCall() : writer_(&context_) {}
  // On the queue's thread. Returns true when the call is over and may be deleted.
  bool Completed(Kind kind, bool ok);

  grpc::ServerContext context_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncWriter<grpc::ByteBuffer> writer_;
  Tag accept_tag_{this, Kind::kAccept};
  Tag write_tag_{this, Kind::kWrite};
  Tag finish_tag_{this, Kind::kFinish};
  Tag done_tag_{this, Kind::kDone};
  WatchCallbacks* callbacks_ = nullptr;  // set on the queue's thread, before any completion

  std::mutex mu_;
  // Guarded by mu_.
  bool writing_ = false;
  bool finish_wanted_ = false;  // Finish called while a write was in flight
  bool finish_started_ = false;
  grpc::Status finish_status_;
  std::atomic<bool> accepted_{false};  // a call came (set on the queue's thread)
  // Queue thread only.
  bool finished_ = false;  // the finish op completed
  bool done_ = false;      // the done notification arrived
};

class WatchServer {
 public:
  // Asks gRPC for the next WatchState call: the service's RequestWatchState (raw async method).
  using Request =
      std::function<void(grpc::ServerContext*, grpc::ByteBuffer*,
                         grpc::ServerAsyncWriter<grpc::ByteBuffer>*, grpc::ServerCompletionQueue*,
                         void* tag)>;
  // Runs on a queue's thread for each new call with its request message.
  using Handler = std::function<void(WatchCall& call, const grpc::ByteBuffer& request)>;

  // Adds `queues` completion queues to `builder` (before BuildAndStart).
  WatchServer(grpc::ServerBuilder& builder, int queues, Request request, Handler handler);
  ~WatchServer();
  WatchServer(const WatchServer&) = delete;
  WatchServer& operator=(const WatchServer&) = delete;

  // After BuildAndStart: accepts calls.
  void Start();
  // After the server's Shutdown (which cancels the calls): waits until the calls are over, then
  // shuts the queues down and joins their threads.
  void Stop();

 private:
  void Accept(grpc::ServerCompletionQueue* cq);
  void Poll(grpc::ServerCompletionQueue* cq);

  const Request request_;
  const Handler handler_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable ended_;  // a call was freed
  std::unordered_set<WatchCall*> calls_;  // guarded by mu_; accepted or waiting for a call
};

}  // namespace tally::watch

#endif  // TALLY_SERVER_WATCH_WATCH_CALL_H_
