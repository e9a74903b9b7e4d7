#ifndef TALLY_AGENT_SPOOL_SPOOL_H_
#define TALLY_AGENT_SPOOL_SPOOL_H_

// Spool: a bounded, crash-safe, on-disk FIFO queue of reports that could not be delivered yet.
//
// Layout: one directory holding append-only segment files `<seq>.seg` (seq: 20 decimal digits,
// increasing) and a `cursor` file naming the first undelivered byte (segment seq, offset). Each
// record is one frame (agent/spool/frame.h: length + CRC + serialized ReportStateRequest).
//
// Order: records come out in the order they were appended, across reopenings; Acknowledge moves
// the cursor, and segments wholly before it are deleted.
//
// Durability (the fsync policy): with `sync` (the default) Append returns only after the frames
// are written and the segment fdatasync'ed, and a new segment, a rewritten segment and the cursor
// are each fsync'ed and made visible with an fsync of the directory. So a record whose Append
// returned OK survives a crash of the process or the machine. Acknowledge syncs the cursor the
// same way; a crash before it is durable replays the acknowledged records again, in order
// (delivery is at least once; a repeated report of an object is harmless since the router keeps
// the latest). `sync = false` skips every fsync (tests, tmpfs): a process crash then loses
// nothing, a machine crash may lose recent appends.
//
// Crash tolerance on Open: a frame cut short or failing its CRC at the end of the last segment (a
// write torn by a crash) is cut off with a warning; the same in an older segment (which was
// complete and synced, so this means disk corruption) drops the rest of that segment with an
// error. Either way the lost bytes are logged and counted in Stats().discarded_bytes; `*.tmp`
// files (an interrupted rewrite) are removed.
//
// Bound: the segment files never exceed `max_bytes` in total. When an Append would pass it, the
// spool makes room by rewriting segments, oldest first, without the records that no longer
// matter: already delivered ones, and every report of an (scenario, object, agent) that has a
// newer report queued (including the one being appended) — only the latest report of a vote
// counts, so the router ends in the same state. These drops are logged (warn) and counted in
// Stats().dropped_superseded. If that frees too little (every queued record is the only one of
// its object), the new report is refused: Append returns RESOURCE_EXHAUSTED and it is logged
// (error) and counted in Stats().rejected. That needs max_bytes to be smaller than one report per
// watched object, which is a misconfiguration.
//
// Thread-safe: every method may be called from any thread.

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tally/v1/state.pb.h"

namespace tally::agent {

struct SpoolOptions {
  std::string dir;                  // created if missing
  int64_t max_bytes = 64 << 20;     // bound of all segment files together
  int64_t segment_bytes = 1 << 20;  // a segment is closed past this size
  bool sync = true;                 // see "Durability" above
};

// A queued report and its position in the queue (ids increase in queue order; they are not
// stable across reopenings).
struct SpooledReport {
  uint64_t id;
  tally::v1::ReportStateRequest report;
};

struct SpoolStats {
  int64_t records = 0;             // queued, not yet acknowledged
  int64_t bytes = 0;               // of segment files on disk
  int64_t dropped_superseded = 0;  // since Open, to stay within max_bytes
  int64_t rejected = 0;            // since Open, refused because full
  int64_t discarded_bytes = 0;     // at Open: torn or corrupt bytes cut off
};

class Spool {
 public:
  // Opens (creating if needed) the spool in options.dir and recovers its queue. INVALID_ARGUMENT
  // for bad options; UNAVAILABLE (with the path and errno text) if the directory or a file cannot
  // be created, read or written.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(SpoolOptions options);

  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends `reports` in order, durably (see "Durability") before returning. OK if all were
  // queued. RESOURCE_EXHAUSTED if some were refused because the spool is full (the others are
  // queued, in order). UNAVAILABLE on an I/O error: the reports before the failing one are queued,
  // it and the ones after it are not (if the final fdatasync fails, all stay queued but may not
  // survive a machine crash). If `queued` is not null it is set to how many were queued.
  absl::Status Append(std::span<const tally::v1::ReportStateRequest> reports,
                      size_t* queued = nullptr);
  absl::Status Append(const tally::v1::ReportStateRequest& report) { return Append({&report, 1}); }

  // Up to `max` reports from the front of the queue, in order, without removing them. A record
  // that cannot be read back is logged, counted as discarded and skipped.
  std::vector<SpooledReport> Peek(size_t max);

  // Removes every queued record with id <= `id` (delivered). UNAVAILABLE if the cursor cannot be
  // written (the records stay queued and will be delivered again).
  absl::Status Acknowledge(uint64_t id);

  bool empty() const;
  SpoolStats Stats() const;

 private:
  struct Segment {
    uint64_t seq;
    int64_t size;  // bytes of the file
  };
  struct Entry {
    uint64_t id;
    uint64_t seq;
    int64_t offset;
    uint32_t frame_size;
    std::string key;  // scenario \0 object_key \0 agent_id
  };

  explicit Spool(SpoolOptions options);

  absl::Status Recover() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendOne(const tally::v1::ReportStateRequest& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StartSegment() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rewrites segments, oldest first, without droppable records until `need` more bytes fit.
  // False if they do not.
  bool MakeRoom(int64_t need, const std::string& incoming_key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RewriteSegment(size_t index, const std::string& incoming_key, int64_t* dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteCursor(uint64_t seq, int64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SyncDir() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes the segments before the first queued record (all of them if none is queued, the
  // open tail included).
  void DeleteConsumedSegments() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string SegmentPath(uint64_t seq) const;

  // Constant after construction.
  const SpoolOptions options_;

  mutable absl::Mutex mu_;
  std::vector<Segment> segments_ ABSL_GUARDED_BY(mu_);  // in seq order; the last one is the tail
  int tail_fd_ ABSL_GUARDED_BY(mu_) = -1;               // of segments_.back(), or -1
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);      // queued records, in order
  absl::flat_hash_map<std::string, uint64_t> latest_ ABSL_GUARDED_BY(mu_);  // key -> newest id
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t cursor_seq_ ABSL_GUARDED_BY(mu_) = 0;  // first undelivered byte: (segment, offset)
  int64_t cursor_offset_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  SpoolStats stats_ ABSL_GUARDED_BY(mu_);
};

// The key that identifies a vote: only the latest report of a key matters.
std::string VoteKey(const tally::v1::ReportStateRequest& report);

}  // namespace tally::agent

#endif  // TALLY_AGENT_SPOOL_SPOOL_H_
