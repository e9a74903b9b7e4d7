// WatchStream and Client::Watch (declared in client/client.h).

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"

namespace tally {

WatchStream::WatchStream(const Client* client, v1::WatchStateRequest request, absl::Time deadline)
    : client_(client),
      request_(std::move(request)),
      deadline_(deadline),
      endpoint_(client->current()),
      resume_token_(request_.resume_token()) {}

WatchStream::~WatchStream() {
  // A sync reader must be finished before its context goes; cancel first so Finish does not
  // wait for a stream that may never end.
  if (reader_ != nullptr) {
    Cancel();
    reader_->Finish();
  }
}

void WatchStream::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

std::string WatchStream::resume_token() const {
  absl::MutexLock lock(&mu_);
  return resume_token_;
}

int WatchStream::resumes() const {
  absl::MutexLock lock(&mu_);
  return resumes_;
}

bool WatchStream::Open() {
  v1::WatchStateRequest request = request_;
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  request.set_resume_token(resume_token_);
  // Once the snapshot is complete, asking for one again would repeat it.
  if (snapshot_done_) request.set_send_initial(false);
  context_ = client_->NewContext(deadline_);
  reader_ = client_->stubs_[endpoint_].state->WatchState(context_.get(), request);
  delivered_ = false;
  return true;
}

void WatchStream::Backoff(absl::Duration delay) {
  delay = std::min(delay, deadline_ - absl::Now());
  if (client_->options_.sleep) {
    client_->options_.sleep(delay);
    return;
  }
  // Woken early by Cancel.
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&cancelled_), delay);
}

absl::StatusOr<v1::WatchStateResponse> WatchStream::Next() {
  while (final_.ok()) {
    if (reader_ == nullptr && !Open()) {
      final_ = absl::CancelledError("watch cancelled");
      break;
    }
    v1::WatchStateResponse response;
    if (reader_->Read(&response)) {
      delivered_ = true;
      failures_ = 0;
      if (response.has_snapshot_done()) snapshot_done_ = true;
      if (response.has_initial()) initial_delivered_ = true;
      if (!response.resume_token().empty()) {
        absl::MutexLock lock(&mu_);
        resume_token_ = response.resume_token();
      }
      client_->Answered(endpoint_);
      return response;
    }
    const std::string& address = client_->stubs_[endpoint_].address;
    absl::Status status = FromGrpcStatus(reader_->Finish(), address);
    reader_.reset();
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      context_.reset();
      cancelled = cancelled_;
    }
    if (cancelled) {
      final_ = absl::CancelledError("watch cancelled");
      break;
    }
    // A stream the router ended without an error is a disconnect too (a router shutting down
    // may end its streams that way): a watch has no natural end.
    if (!status.ok() && !IsRetryable(status)) {
      final_ = std::move(status);
      break;
    }
    if (status.ok()) {
      status = absl::UnavailableError(absl::StrCat("router ", address, ": ended the watch"));
    }
    if (request_.send_initial() && initial_delivered_ && !snapshot_done_) {
      // `initial` events carry no resume token: a snapshot cannot be continued, and restarting
      // it would silently leave the caller with states of objects the new snapshot no longer
      // has. The caller must list again, as for a token too old.
      final_ =
          absl::OutOfRangeError(absl::StrCat("the watch broke during its initial snapshot (",
                                             status.message(), "); watch again with send_initial"));
      break;
    }
    if (!delivered_) ++failures_;
    client_->Failed(endpoint_);
    endpoint_ = (endpoint_ + 1) % client_->stubs_.size();
    if (failures_ >= client_->options_.retry.max_attempts) {
      final_ = absl::UnavailableError(absl::StrCat("WatchState: no router answered (", failures_,
                                                   " attempts); last error: ", status.message()));
      break;
    }
    if (absl::Now() >= deadline_) {
      final_ = absl::DeadlineExceededError("watch deadline passed");
      break;
    }
    Backoff(client_->NextBackoff(std::max(1, failures_)));
    absl::MutexLock lock(&mu_);
    ++resumes_;
  }
  return final_;
}

std::unique_ptr<WatchStream> Client::Watch(const std::string& scenario, const WatchTarget& target,
                                           WatchOptions options) const {
  v1::WatchStateRequest request;
  request.set_scenario(scenario);
  request.set_object_key(target.object_key);
  request.set_prefix(target.prefix);
  request.set_send_initial(options.send_initial);
  request.set_resume_token(options.resume_token);
  const absl::Time deadline = options.timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + options.timeout;
  return std::unique_ptr<WatchStream>(new WatchStream(this, std::move(request), deadline));
}

absl::Status Client::Watch(
    const std::string& scenario, const WatchTarget& target, WatchOptions options,
    const std::function<bool(const v1::WatchStateResponse&)>& on_event) const {
  std::unique_ptr<WatchStream> stream = Watch(scenario, target, std::move(options));
  for (;;) {
    absl::StatusOr<v1::WatchStateResponse> event = stream->Next();
    if (!event.ok()) return event.status();
    if (!on_event(*event)) return absl::OkStatus();
  }
}

}  // namespace tally
