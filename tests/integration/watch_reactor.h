#ifndef TALLY_TESTS_INTEGRATION_WATCH_REACTOR_H_
#define TALLY_TESTS_INTEGRATION_WATCH_REACTOR_H_

// A WatchState stream on gRPC's callback API, for tests and benchmarks that hold thousands of
// watches (a thread each would not do). A subclass sees every response in OnResponse and calls
// Start() at the end of its constructor, and Stop() first thing in its destructor: gRPC may call
// OnResponse until Stop() returns.

#include <condition_variable>
#include <mutex>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tally/v1/state.grpc.pb.h"

namespace tally::test {

class WatchReactor : public grpc::ClientReadReactor<v1::WatchStateResponse> {
 public:
  // Cancels the stream and waits until gRPC is done with it. Idempotent.
  void Stop();
  // Responses received so far, progress messages included.
  int responses();

 protected:
  WatchReactor() = default;
  // Opens the stream.
  void Start(v1::StateService::Stub& stub, v1::WatchStateRequest request);
  // Called on a gRPC thread with mu_ held, once per response, `received` being the time it
  // arrived.
  virtual void OnResponse(const v1::WatchStateResponse& response, absl::Time received) = 0;

  std::mutex mu_;

 private:
  void OnReadDone(bool ok) final;
  void OnDone(const grpc::Status& status) final;

  grpc::ClientContext context_;
  v1::WatchStateRequest request_;
  v1::WatchStateResponse response_;
  std::condition_variable cv_;
  // Guarded by mu_.
  bool done_ = false;
  int responses_ = 0;
};

}  // namespace tally::test

#endif  // TALLY_TESTS_INTEGRATION_WATCH_REACTOR_H_
