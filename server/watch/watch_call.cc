#include "server/watch/watch_call.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/log.h"

namespace tally::watch {

void WatchCall::StartWrite(const grpc::ByteBuffer* buffer) {
  std::lock_guard lock(mu_);
  writing_ = true;
  writer_.Write(*buffer, &write_tag_);
}

void WatchCall::Finish(grpc::Status status) {
  std::lock_guard lock(mu_);
  if (finish_started_ || finish_wanted_) return;
  if (writing_) {  // one operation of a kind at a time: after the write
    finish_wanted_ = true;
    finish_status_ = std::move(status);
    return;
  }
  finish_started_ = true;
  writer_.Finish(status, &finish_tag_);
}

bool WatchCall::Completed(Kind kind, bool ok) {
  switch (kind) {
    case Kind::kAccept:
      break;  // WatchServer::Poll's
    case Kind::kWrite: {
      {
        std::lock_guard lock(mu_);
        writing_ = false;
        if (finish_wanted_ && !finish_started_) {
          finish_started_ = true;
          writer_.Finish(finish_status_, &finish_tag_);
        }
      }
      if (callbacks_ != nullptr) callbacks_->OnWriteDone(ok);
      break;
    }
    case Kind::kFinish:
      finished_ = true;
      break;
    case Kind::kDone:
      if (!accepted_) return false;  // a request the server dropped at shutdown: Stop frees it
      done_ = true;
      if (context_.IsCancelled() && callbacks_ != nullptr) callbacks_->OnCancel();
      break;
  }
  if (!done_ || !finished_) return false;
  {
    std::lock_guard lock(mu_);
    if (writing_) return false;
  }
  if (callbacks_ != nullptr) callbacks_->OnDone();
  return true;
}

WatchServer::WatchServer(grpc::ServerBuilder& builder, int queues, Request request,
                         Handler handler)
    : request_(std::move(request)), handler_(std::move(handler)) {
  for (int q = 0; q < std::max(queues, 1); ++q) queues_.push_back(builder.AddCompletionQueue());
}

WatchServer::~WatchServer() { Stop(); }

void WatchServer::Start() {
  for (auto& cq : queues_) {
    Accept(cq.get());
    threads_.emplace_back([this, cq = cq.get()] { Poll(cq); });
  }
}

void WatchServer::Accept(grpc::ServerCompletionQueue* cq) {
  auto* call = new WatchCall;
  {
    std::lock_guard lock(mu_);
    calls_.insert(call);
  }
  call->context_.AsyncNotifyWhenDone(&call->done_tag_);
  request_(&call->context_, &call->request_, &call->writer_, cq, &call->accept_tag_);
}

void WatchServer::Poll(grpc::ServerCompletionQueue* cq) {
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    auto* t = static_cast<WatchCall::Tag*>(tag);
    WatchCall* call = t->call;
    if (t->kind == WatchCall::Kind::kAccept) {
      if (!ok) continue;  // the server is shutting down: no call came; Stop frees it
      call->accepted_ = true;
      if (!stopping_.load()) Accept(cq);  // the next call, while this one is handled
      handler_(*call, call->request_);
      continue;
    }
    if (call->Completed(t->kind, ok)) {
      {
        std::lock_guard lock(mu_);
        calls_.erase(call);
      }
      delete call;
      ended_.notify_all();
    }
  }
}

void WatchServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (threads_.empty()) {  // never started: no call, but the queues still close
    for (auto& cq : queues_) {
      cq->Shutdown();
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) {
      }
    }
    return;
  }
  // The server's Shutdown cancelled every call: their streams finish, and the calls end.
  auto live = [&] {
    for (WatchCall* call : calls_) {
      if (call->accepted_) return true;
    }
    return false;
  };
  {
    std::unique_lock lock(mu_);
    if (!ended_.wait_for(lock, std::chrono::seconds(10), [&] { return !live(); })) {
      log::Warn("WatchState calls still open at shutdown; their queues close anyway",
                {{"calls", absl::StrCat(calls_.size())}});
    }
  }
  for (auto& cq : queues_) cq->Shutdown();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  std::lock_guard lock(mu_);
  for (WatchCall* call : calls_) {
    if (!call->accepted_) delete call;  // requests no call matched
  }
  calls_.clear();
}

}  // namespace tally::watch
