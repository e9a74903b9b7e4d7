#ifndef TALLY_SERVER_WATCH_WATCH_STREAM_H_
#define TALLY_SERVER_WATCH_WATCH_STREAM_H_

// WatchStream serves one WatchState call (a WatchCall, see watch_call.h): it subscribes to the
// router's ChangeFeed, first streams what comes before the live tail — the snapshot of
// send_initial, or the backlog after a resume token — from a thread of its own, then the live
// events, each with the resume token of the position after it. A stream that has no token yet gets
// a Progress message within about a second of going live (which also tells the client it is); after
// that an idle stream gets one every WatchOptions::idle_ticks_per_progress ticks (seconds), when
// the feed has moved past the token it holds, so a client that resumes reads at most that much
// backlog. Every response carries the resume token of the position after it, except the `initial`
// messages of a snapshot: a client that loses the stream before snapshot_done lists again.
//
// Guarantees: per partition, events are delivered in offset order, each at most once, with no
// gap: resuming from any token a response carried continues exactly after it. With send_initial,
// the snapshot of each partition is one consistent LMDB snapshot taken at a known changes offset;
// the events streamed after it are exactly those after that offset (etcd's list-then-watch).
//
// A watcher that does not keep up — more than `max_queued` live events waiting — is ended with
// RESOURCE_EXHAUSTED; the status message and the trailing metadata "tally-resume-token" carry the
// token of the last event it received. A resume token older than the topic's retention ends
// with OUT_OF_RANGE (list again with send_initial).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/watch/change_feed.h"
#include "server/watch/watch_call.h"
#include "tally/internal/v1/shard.pb.h"
#include "tally/v1/state.pb.h"

namespace tally::watch {

struct WatchOptions {
  size_t max_queued = 10000;
  // Progress ticks (the feed's, about a second each) an idle stream waits between progress
  // messages (router.watch_progress_interval).
  int idle_ticks_per_progress = 10;
};

// Streams one partition's snapshot (through the routing to its active node) to `emit`; returns
// its changes offset.
using SnapshotFn = std::function<absl::StatusOr<int64_t>(
    const internal::v1::ShardSnapshotRequest& request,
    const std::function<bool(const internal::v1::ShardSnapshotResponse&)>& emit)>;

// Binds the stream for one call to `call`; it deletes itself when the call is done, and releases
// `lease` (e.g. a per-principal watch count) then. Runs on the call's queue thread (the
// handler's). `feed` and `snapshot` must outlive every stream. `partitions` is the scenario's
// partition count; the request has been checked by the caller except for its resume token.
//
// The stream writes serialized WatchStateResponse messages (the method is registered raw, see
// StateService): a live event's bytes are serialized once by the feed and shared by all its
// watchers.
void NewWatchStream(WatchCall& call, const v1::WatchStateRequest& request, int32_t partitions,
                    ChangeFeed& feed, SnapshotFn snapshot, WatchOptions options,
                    std::shared_ptr<void> lease = nullptr);

}  // namespace tally::watch

#endif  // TALLY_SERVER_WATCH_WATCH_STREAM_H_
