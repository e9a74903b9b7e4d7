#include "server/watch/watch_stream.h"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>

#include "absl/strings/str_cat.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "server/common/log.h"
#include "server/watch/resume_token.h"

namespace tally::watch {
namespace {

// Most snapshot and backlog messages buffered ahead of the writer; the filling thread waits.
constexpr size_t kMaxBacklog = 1024;

struct BacklogEnd {};
struct ProgressItem {
  std::shared_ptr<const ProgressTick> tick;
};
// The snapshot is complete; the stream continues from its changes offsets.
struct SnapshotDoneItem {
  std::vector<int64_t> positions;
};
using Item = std::variant<std::shared_ptr<const ChangeItem>, v1::ObjectState, SnapshotDoneItem,
                          ProgressItem, BacklogEnd>;

class WatchStream final : public WatchCallbacks, public Subscriber {
 public:
  WatchStream(WatchCall& call, const v1::WatchStateRequest& request, int32_t partitions,
              ChangeFeed& feed, SnapshotFn snapshot, WatchOptions options,
              std::shared_ptr<void> lease)
      : lease_(std::move(lease)),
        call_(call),
        context_(&call.context()),
        request_(request),
        partitions_(partitions),
        feed_(feed),
        snapshot_(std::move(snapshot)),
        options_(options),
        shared_(std::make_shared<Shared>()) {
    shared_->stream = this;  // no other thread knows shared_ yet
    Position start{request.scenario(), {}};
    if (!request.resume_token().empty()) {
      auto parsed = ParseResumeToken(request.resume_token(), request.scenario(), partitions);
      if (!parsed.ok()) {
        FinishNow(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                               std::string(parsed.status().message())));
        return;
      }
      start = std::move(*parsed);
    }
    Filter filter{request.object_key(), request.prefix()};
    // Not under mu_: the feed calls OnLive (which takes mu_) while holding its own lock.
    std::vector<int64_t> live_start =
        feed_.Subscribe(request.scenario(), filter, this, context_->peer());
    subscribed_ = true;
    if (start.offsets.empty()) start.offsets = live_start;
    bool needs_backlog = request.send_initial();
    for (int32_t p = 0; p < partitions_; ++p) needs_backlog |= start.offsets[p] < live_start[p];
    {
      std::lock_guard lock(mu_);
      live_start_ = live_start;
      delivered_ = start.offsets;
      if (!needs_backlog) {
        SetFloor(start.offsets);
        backlog_done_ = true;
        Advance();
        return;
      }
    }
    // The snapshot or backlog comes from a thread. It holds the shared state, not the reactor,
    // which may be gone before it notices.
    Backlog backlog{shared_, request_, partitions_, &feed_, snapshot_, filter, start, live_start};
    std::thread([backlog = std::move(backlog)]() mutable { FillBacklog(backlog); }).detach();
  }

  // Subscriber (feed thread).
  void OnLive(const std::shared_ptr<const ChangeItem>& item) override {
    std::lock_guard lock(mu_);
    if (finished_) return;
    if (live_.size() >= options_.max_queued) {
      overflowed_ = true;
    } else {
      live_.push_back(item);
    }
    Advance();
  }
  void OnProgress(const std::shared_ptr<const ProgressTick>& tick) override {
    std::lock_guard lock(mu_);
    if (finished_ || !backlog_done_ || writing_ || !live_.empty()) return;
    // Ticks come about once a second; counting them, not reading a clock per write (with 10,000
    // watchers those reads were a visible share of the fan-out). The first tick after a stream
    // goes live gives a client that has no token yet its first one (and tells it the watch is
    // live). After that an idle stream gets a token every options_.idle_ticks_per_progress
    // ticks, and only when the feed moved past the one it holds: a token is for resuming
    // without a long backlog read, and 10,000 idle watchers written to every second cost a core.
    if (has_token_ && (++idle_ticks_ < options_.idle_ticks_per_progress ||
                       NotAfter(tick->positions, delivered_))) {
      return;
    }
    live_.push_back(ProgressItem{tick});
    Advance();
  }
  size_t queued() const override {
    std::lock_guard lock(mu_);
    return live_.size();
  }

  // WatchCallbacks.
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    Advance();
  }
  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    if (subscribed_) feed_.Unsubscribe(this);  // no OnLive/OnProgress after this
    {
      std::lock_guard lock(shared_->mu);
      shared_->cancelled.store(true);
      shared_->stream = nullptr;
    }
    shared_->room.notify_all();
    delete this;
  }

 private:
  // What the backlog thread shares with the stream.
  struct Shared {
    std::mutex mu;
    std::condition_variable room;
    std::atomic<bool> cancelled{false};
    WatchStream* stream = nullptr;  // null once the reactor is done
  };

  struct Backlog {
    std::shared_ptr<Shared> shared;
    v1::WatchStateRequest request;
    int32_t partitions;
    ChangeFeed* feed;
    SnapshotFn snapshot;
    Filter filter;
    Position start;
    std::vector<int64_t> live_start;
  };

  // Runs on the backlog thread: the snapshot (send_initial) and the events between the start
  // position and the live tail, then BacklogEnd.
  static void FillBacklog(Backlog& b) {
    Shared& shared = *b.shared;
    // Adds an item, waiting for room; false once the stream is gone.
    auto push = [&](Item item) {
      while (!shared.cancelled.load()) {
        {
          std::lock_guard lock(shared.mu);
          WatchStream* stream = shared.stream;
          if (stream == nullptr) return false;
          std::lock_guard stream_lock(stream->mu_);
          if (stream->finished_) return false;
          if (stream->backlog_.size() < kMaxBacklog) {
            stream->backlog_.push_back(std::move(item));
            stream->Advance();
            return true;
          }
        }
        // The writer notifies after taking an item.
        std::unique_lock lock(shared.mu);
        shared.room.wait_for(lock, std::chrono::milliseconds(50));
      }
      return false;
    };
    auto fail = [&](const absl::Status& status) {
      std::lock_guard lock(shared.mu);
      if (shared.stream == nullptr) return;
      std::lock_guard stream_lock(shared.stream->mu_);
      shared.stream->FinishLocked(grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                                               std::string(status.message())));
    };

    std::vector<int64_t>& start = b.start.offsets;
    if (b.request.send_initial()) {
      for (int32_t p = 0; p < b.partitions; ++p) {
        internal::v1::ShardSnapshotRequest snapshot;
        snapshot.set_scenario(b.request.scenario());
        snapshot.set_partition(p);
        snapshot.set_prefix(b.filter.prefix);
        snapshot.set_object_key(b.filter.object_key);
        auto changes_offset =
            b.snapshot(snapshot, [&](const internal::v1::ShardSnapshotResponse& r) {
              for (const v1::ObjectState& state : r.states()) {
                if (!push(state)) return false;
              }
              return true;
            });
        if (!changes_offset.ok()) return fail(changes_offset.status());
        start[p] = *changes_offset;
      }
      if (!push(SnapshotDoneItem{start})) return;
    }
    for (int32_t p = 0; p < b.partitions; ++p) {
      if (start[p] >= b.live_start[p]) continue;
      absl::Status status = b.feed->ReadBacklog(
          b.request.scenario(), p, start[p], b.live_start[p], b.filter,
          [&](const ChangeItem& item) { return push(std::make_shared<const ChangeItem>(item)); },
          shared.cancelled);
      if (!status.ok()) return fail(status);
    }
    {
      std::lock_guard lock(shared.mu);
      if (shared.stream == nullptr) return;
      std::lock_guard stream_lock(shared.stream->mu_);
      shared.stream->SetFloor(start);
    }
    push(BacklogEnd{});
  }

  // Live events below the floor were already covered by the snapshot or the backlog.
  void SetFloor(const std::vector<int64_t>& start) {
    floor_.resize(partitions_);
    for (int32_t p = 0; p < partitions_; ++p) floor_[p] = std::max(start[p], live_start_[p]);
  }

  // Writes the next message if none is being written. Called with mu_ held.
  void Advance() {
    if (finished_ || writing_) return;
    if (overflowed_) {
      std::string token = EncodeResumeToken(Position{request_.scenario(), delivered_});
      context_->AddTrailingMetadata("tally-resume-token", token);
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                absl::StrCat("the watcher fell more than ", options_.max_queued,
                                             " events behind; resume with resume_token=", token)));
      return;
    }
    while (true) {
      std::optional<Item> next;
      if (!backlog_done_) {
        if (backlog_.empty()) return;
        next = std::move(backlog_.front());
        backlog_.pop_front();
        shared_->room.notify_all();
      } else {
        if (live_.empty()) return;
        next = std::move(live_.front());
        live_.pop_front();
      }
      response_.Clear();
      if (auto* shared_change = std::get_if<std::shared_ptr<const ChangeItem>>(&*next)) {
        const ChangeItem& change = **shared_change;
        if (backlog_done_ && change.offset < floor_[change.partition]) continue;
        if (change.offset < delivered_[change.partition]) continue;  // never twice
        if (!change.positions.empty() && NotAfter(delivered_, change.positions)) {
          // The common case: the feed's bytes, token included, shared with every watcher.
          delivered_ = change.positions;
          grpc::ByteBuffer shared(&change.response, 1);  // a reference, not a copy
          has_token_ = true;
          StartWriteLocked(shared);
          return;
        }
        // A backlog event, or a live one just after a snapshot that ends later than the feed
        // was on some partition: this watcher's own token.
        for (size_t p = 0; p < change.positions.size(); ++p) {
          delivered_[p] = std::max(delivered_[p], change.positions[p]);
        }
        delivered_[change.partition] = change.offset + 1;
        *response_.mutable_change() = change.change;
      } else if (auto* state = std::get_if<v1::ObjectState>(&*next)) {
        // Inside the snapshot there is no position to resume from: a client that loses the
        // stream before snapshot_done lists again.
        *response_.mutable_initial() = std::move(*state);
        SerializeAndWriteLocked(response_);
        return;
      } else if (auto* done = std::get_if<SnapshotDoneItem>(&*next)) {
        delivered_ = done->positions;
        response_.mutable_snapshot_done();
      } else if (auto* progress = std::get_if<ProgressItem>(&*next)) {
        const ProgressTick& tick = *progress->tick;
        if (NotAfter(delivered_, tick.positions)) {
          // The common case: the tick's bytes, token included, shared with every watcher.
          delivered_ = tick.positions;
          grpc::ByteBuffer shared(&tick.response, 1);  // a reference, not a copy
          has_token_ = true;
          StartWriteLocked(shared);
          return;
        }
        for (int32_t p = 0; p < partitions_; ++p) {
          delivered_[p] = std::max(delivered_[p], tick.positions[p]);
        }
        response_.mutable_progress();
      } else {  // BacklogEnd
        backlog_done_ = true;
        for (int32_t p = 0; p < partitions_; ++p)
          delivered_[p] = std::max(delivered_[p], floor_[p]);
        continue;
      }
      response_.set_resume_token(EncodeResumeToken(Position{request_.scenario(), delivered_}));
      SerializeAndWriteLocked(response_);
      return;
    }
  }

  static bool NotAfter(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    if (a.size() != b.size()) return false;
    for (size_t p = 0; p < a.size(); ++p) {
      if (a[p] > b[p]) return false;
    }
    return true;
  }

  // Writes `buffer` (taking its contents).
  void StartWriteLocked(grpc::ByteBuffer& buffer) {
    write_buffer_.Swap(&buffer);
    writing_ = true;
    idle_ticks_ = 0;
    call_.StartWrite(&write_buffer_);
  }
  void SerializeAndWriteLocked(const v1::WatchStateResponse& response) {
    bool own_buffer = false;
    grpc::ByteBuffer buffer;
    // Serializing a message we built cannot fail.
    grpc::Status status = grpc::SerializationTraits<v1::WatchStateResponse>::Serialize(
        response, &buffer, &own_buffer);
    assert(status.ok());
    (void)status;
    if (!response.resume_token().empty()) has_token_ = true;
    StartWriteLocked(buffer);
  }

  void FinishNow(grpc::Status status) {
    std::lock_guard lock(mu_);
    FinishLocked(std::move(status));
  }
  void FinishLocked(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    live_.clear();
    backlog_.clear();
    shared_->cancelled.store(true);
    shared_->room.notify_all();
    call_.Finish(std::move(status));
  }

  const std::shared_ptr<void> lease_;
  WatchCall& call_;
  grpc::ServerContext* const context_;
  const v1::WatchStateRequest request_;
  const int32_t partitions_;
  ChangeFeed& feed_;
  const SnapshotFn snapshot_;
  const WatchOptions options_;
  const std::shared_ptr<Shared> shared_;
  std::vector<int64_t> live_start_;  // set before any callback can run
  bool subscribed_ = false;

  mutable std::mutex mu_;
  // Guarded by mu_.
  std::deque<Item> backlog_;
  std::deque<Item> live_;
  std::vector<int64_t> floor_;
  std::vector<int64_t> delivered_;
  bool backlog_done_ = false;
  bool writing_ = false;
  bool finished_ = false;
  bool overflowed_ = false;
  bool has_token_ = false;  // a message with a resume token was written
  int idle_ticks_ = 0;      // progress ticks since the last write
  v1::WatchStateResponse response_;
  grpc::ByteBuffer write_buffer_;  // the message being written
};

}  // namespace

void NewWatchStream(WatchCall& call, const v1::WatchStateRequest& request, int32_t partitions,
                    ChangeFeed& feed, SnapshotFn snapshot, WatchOptions options,
                    std::shared_ptr<void> lease) {
  call.Bind(new WatchStream(call, request, partitions, feed, std::move(snapshot), options,
                            std::move(lease)));
}

}  // namespace tally::watch
