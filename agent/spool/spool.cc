#include "agent/spool/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "agent/spool/frame.h"
#include "server/common/log.h"

namespace tally::agent {
namespace {

namespace fs = std::filesystem;
using spool::DecodeFrame;
using spool::EncodeFrame;
using spool::FrameStatus;
using spool::kSegmentMagic;

constexpr int64_t kMagicSize = static_cast<int64_t>(kSegmentMagic.size());
constexpr char kCursorFile[] = "cursor";
constexpr std::string_view kSegmentSuffix = ".seg";
constexpr char kSegmentFormat[] = "%s/%020u.seg";

absl::Status IoError(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat("spool: ", what, " ", path, ": ", strerror(errno)));
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return IoError("cannot write", path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open", path);
  std::string data;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = IoError("cannot read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

// Writes `data` to `path` through a temporary file and a rename, so readers see the old or the
// new content, never a mix.
absl::Status ReplaceFile(const std::string& path, std::string_view data, bool sync) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot create", tmp);
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && sync && ::fdatasync(fd) != 0) s = IoError("cannot sync", tmp);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = IoError("cannot rename", tmp);
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

uint32_t Crc(std::string_view s) {
  return static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(s.data()), s.size()));
}

std::string CursorText(uint64_t seq, int64_t offset) {
  std::string body = absl::StrCat(seq, " ", offset);
  return absl::StrCat(body, " ", Crc(body), "\n");
}

bool ParseCursor(absl::string_view text, uint64_t* seq, int64_t* offset) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  uint32_t crc = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], seq) ||
      !absl::SimpleAtoi(parts[1], offset) || !absl::SimpleAtoi(parts[2], &crc)) {
    return false;
  }
  return Crc(absl::StrCat(*seq, " ", *offset)) == crc && *offset >= 0;
}

bool ParseSegmentName(const std::string& name, uint64_t* seq) {
  if (name.size() != 20 + kSegmentSuffix.size() || !name.ends_with(kSegmentSuffix)) return false;
  return absl::SimpleAtoi(name.substr(0, 20), seq);
}

}  // namespace

std::string VoteKey(const tally::v1::ReportStateRequest& report) {
  std::string key;
  key.reserve(report.scenario().size() + report.object_key().size() + report.agent_id().size() + 2);
  key.append(report.scenario()).push_back('\0');
  key.append(report.object_key()).push_back('\0');
  key.append(report.agent_id());
  return key;
}

Spool::Spool(SpoolOptions options) : options_(std::move(options)) {}

Spool::~Spool() {
  absl::MutexLock lock(&mu_);
  if (tail_fd_ >= 0) ::close(tail_fd_);
}

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(SpoolOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("spool: dir must not be empty");
  if (options.segment_bytes <= kMagicSize || options.max_bytes < options.segment_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spool: need ", kMagicSize, " < segment_bytes <= max_bytes, got segment_bytes=",
        options.segment_bytes, " max_bytes=", options.max_bytes));
  }
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("spool: cannot create directory ", options.dir, ": ", ec.message()));
  }
  std::unique_ptr<Spool> spool(new Spool(std::move(options)));
  absl::MutexLock lock(&spool->mu_);
  if (absl::Status s = spool->Recover(); !s.ok()) return s;
  return spool;
}

std::string Spool::SegmentPath(uint64_t seq) const {
  return absl::StrFormat(kSegmentFormat, options_.dir, seq);
}

absl::Status Spool::Recover() {
  const std::string cursor_path = absl::StrCat(options_.dir, "/", kCursorFile);
  if (fs::exists(cursor_path)) {
    absl::StatusOr<std::string> text = ReadFile(cursor_path);
    if (!text.ok()) return text.status();
    if (!ParseCursor(*text, &cursor_seq_, &cursor_offset_)) {
      // Without a cursor every queued record is delivered again: duplicates, never a loss.
      log::Warn("spool cursor unreadable; replaying the whole queue", {{"path", cursor_path}});
      cursor_seq_ = 0;
      cursor_offset_ = 0;
    }
  }
  std::vector<uint64_t> seqs;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(options_.dir, ec)) {
    std::string name = e.path().filename().string();
    uint64_t seq = 0;
    if (name.ends_with(".tmp")) {
      ::unlink(e.path().c_str());  // an interrupted rewrite; the original is still in place
    } else if (ParseSegmentName(name, &seq)) {
      seqs.push_back(seq);
    }
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("spool: cannot list ", options_.dir, ": ", ec.message()));
  }
  std::sort(seqs.begin(), seqs.end());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const uint64_t seq = seqs[i];
    const std::string path = SegmentPath(seq);
    if (seq < cursor_seq_) {  // delivered; its deletion was cut short
      ::unlink(path.c_str());
      continue;
    }
    const bool last = i + 1 == seqs.size();
    absl::StatusOr<std::string> data = ReadFile(path);
    if (!data.ok()) return data.status();
    if (data->size() < kSegmentMagic.size() || !data->starts_with(kSegmentMagic)) {
      // A segment whose creation was cut short (or not ours): nothing in it can be read.
      (last ? log::Warn : log::Error)("spool segment without header removed",
                                      {{"path", path}, {"bytes", data->size()}});
      stats_.discarded_bytes += static_cast<int64_t>(data->size());
      ::unlink(path.c_str());
      continue;
    }
    const int64_t start = seq == cursor_seq_ ? std::max(cursor_offset_, kMagicSize) : kMagicSize;
    int64_t pos = kMagicSize;
    const int64_t size = static_cast<int64_t>(data->size());
    while (pos < size) {
      spool::DecodedFrame frame = DecodeFrame(std::string_view(*data).substr(pos));
      tally::v1::ReportStateRequest report;
      bool parsed = frame.status == FrameStatus::kOk &&
                    report.ParseFromArray(frame.payload.data(), frame.payload.size());
      if (!parsed) {
        // The tail of the last segment is where a crash tears a write; anywhere else the bytes
        // were synced once, so this is corruption. Either way what follows cannot be framed.
        const int64_t lost = size - pos;
        (last ? log::Warn : log::Error)(
            last ? "spool: torn tail cut off" : "spool: corrupt segment cut short",
            {{"path", path}, {"offset", pos}, {"bytes", lost}});
        stats_.discarded_bytes += lost;
        if (::truncate(path.c_str(), pos) != 0) return IoError("cannot truncate", path);
        break;
      }
      if (pos >= start) {
        Entry entry{next_id_++, seq, pos, static_cast<uint32_t>(frame.size), VoteKey(report)};
        latest_[entry.key] = entry.id;
        entries_.push_back(std::move(entry));
      }
      pos += static_cast<int64_t>(frame.size);
    }
    segments_.push_back({seq, pos});
    bytes_ += pos;
  }
  if (!segments_.empty()) {
    const std::string path = SegmentPath(segments_.back().seq);
    tail_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (tail_fd_ < 0) return IoError("cannot open", path);
    if (options_.sync && ::fdatasync(tail_fd_) != 0) return IoError("cannot sync", path);
  }
  if (!entries_.empty() || stats_.discarded_bytes > 0) {
    log::Info("spool recovered", {{"dir", options_.dir},
                                  {"records", entries_.size()},
                                  {"bytes", bytes_},
                                  {"discarded_bytes", stats_.discarded_bytes}});
  }
  return absl::OkStatus();
}

absl::Status Spool::SyncDir() {
  if (!options_.sync) return absl::OkStatus();
  int fd = ::open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open", options_.dir);
  absl::Status s;
  if (::fsync(fd) != 0) s = IoError("cannot sync", options_.dir);
  ::close(fd);
  return s;
}

absl::Status Spool::WriteCursor(uint64_t seq, int64_t offset) {
  const std::string path = absl::StrCat(options_.dir, "/", kCursorFile);
  if (absl::Status s = ReplaceFile(path, CursorText(seq, offset), options_.sync); !s.ok()) return s;
  return SyncDir();
}

absl::Status Spool::StartSegment() {
  if (tail_fd_ >= 0) {
    const std::string old = SegmentPath(segments_.back().seq);
    if (options_.sync && ::fdatasync(tail_fd_) != 0) return IoError("cannot sync", old);
    ::close(tail_fd_);
    tail_fd_ = -1;
  }
  const uint64_t seq = std::max(segments_.empty() ? 0 : segments_.back().seq, cursor_seq_) + 1;
  const std::string path = SegmentPath(seq);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot create", path);
  absl::Status s = WriteAll(fd, kSegmentMagic, path);
  if (s.ok() && options_.sync && ::fdatasync(fd) != 0) s = IoError("cannot sync", path);
  if (s.ok()) s = SyncDir();
  if (!s.ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    return s;
  }
  tail_fd_ = fd;
  segments_.push_back({seq, kMagicSize});
  bytes_ += kMagicSize;
  return absl::OkStatus();
}

absl::Status Spool::Append(std::span<const tally::v1::ReportStateRequest> reports, size_t* queued) {
  absl::MutexLock lock(&mu_);
  int64_t rejected = 0;
  size_t wrote = 0;
  if (queued != nullptr) *queued = 0;
  for (const tally::v1::ReportStateRequest& report : reports) {
    absl::Status s = AppendOne(report);
    if (absl::IsResourceExhausted(s)) {
      ++rejected;
    } else if (!s.ok()) {
      return s;
    } else {
      ++wrote;
      if (queued != nullptr) *queued = wrote;
    }
  }
  if (wrote > 0 && options_.sync && tail_fd_ >= 0 && ::fdatasync(tail_fd_) != 0) {
    return IoError("cannot sync", SegmentPath(segments_.back().seq));
  }
  if (rejected > 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("spool full (max_bytes ", options_.max_bytes, "): refused ", rejected,
                     " report(s) with no older report of the same object to drop"));
  }
  return absl::OkStatus();
}

absl::Status Spool::AppendOne(const tally::v1::ReportStateRequest& report) {
  std::string payload;
  report.SerializeToString(&payload);
  if (payload.size() > spool::kMaxPayloadSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("spool: report of ", payload.size(), " bytes is too large"));
  }
  const std::string frame = EncodeFrame(payload);
  std::string key = VoteKey(report);
  const bool roll = tail_fd_ < 0 || segments_.back().size >= options_.segment_bytes;
  const int64_t need = static_cast<int64_t>(frame.size()) + (roll ? kMagicSize : 0);
  if (bytes_ + need > options_.max_bytes && !MakeRoom(need, key)) {
    ++stats_.rejected;
    log::Error("spool full: report refused", {{"scenario", report.scenario()},
                                              {"object", report.object_key()},
                                              {"state", report.state()},
                                              {"spool_bytes", bytes_},
                                              {"max_bytes", options_.max_bytes},
                                              {"rejected_total", stats_.rejected}});
    return absl::ResourceExhaustedError("spool full");
  }
  // MakeRoom may have emptied and closed the tail.
  if (tail_fd_ < 0 || segments_.back().size >= options_.segment_bytes) {
    if (absl::Status s = StartSegment(); !s.ok()) return s;
  }
  Segment& tail = segments_.back();
  const std::string path = SegmentPath(tail.seq);
  if (absl::Status s = WriteAll(tail_fd_, frame, path); !s.ok()) {
    // Cut off whatever part of the frame made it, so the next append starts on a frame boundary.
    if (::ftruncate(tail_fd_, tail.size) != 0) {
      log::Error("spool: cannot cut off a failed write", {{"path", path}});
    }
    return s;
  }
  Entry entry{next_id_++, tail.seq, tail.size, static_cast<uint32_t>(frame.size()), std::move(key)};
  tail.size += static_cast<int64_t>(frame.size());
  bytes_ += static_cast<int64_t>(frame.size());
  latest_[entry.key] = entry.id;
  entries_.push_back(std::move(entry));
  return absl::OkStatus();
}

bool Spool::MakeRoom(int64_t need, const std::string& incoming_key) {
  const int64_t before = bytes_;
  int64_t dropped = 0;
  size_t i = 0;
  while (i < segments_.size() && bytes_ + need > options_.max_bytes) {
    const size_t count = segments_.size();
    if (absl::Status s = RewriteSegment(i, incoming_key, &dropped); !s.ok()) {
      log::Error("spool: cannot rewrite segment to make room", {{"error", s.ToString()}});
      break;
    }
    if (segments_.size() == count) ++i;  // else segment i was removed; i names the next one
  }
  if (dropped > 0 || bytes_ < before) {
    stats_.dropped_superseded += dropped;
    log::Warn("spool full: dropped reports superseded by newer ones of the same object",
              {{"dropped", dropped},
               {"freed_bytes", before - bytes_},
               {"dropped_total", stats_.dropped_superseded},
               {"max_bytes", options_.max_bytes}});
  }
  return bytes_ + need <= options_.max_bytes;
}

absl::Status Spool::RewriteSegment(size_t index, const std::string& incoming_key,
                                   int64_t* dropped) {
  const Segment seg = segments_[index];
  const bool is_tail = index + 1 == segments_.size();
  std::vector<Entry*> kept;
  absl::flat_hash_set<uint64_t> drop;
  int64_t kept_bytes = kMagicSize;
  for (Entry& e : entries_) {
    if (e.seq != seg.seq) continue;
    auto it = latest_.find(e.key);
    if (e.key == incoming_key || it == latest_.end() || it->second != e.id) {
      drop.insert(e.id);
    } else {
      kept.push_back(&e);
      kept_bytes += e.frame_size;
    }
  }
  if (kept_bytes == seg.size) return absl::OkStatus();  // nothing delivered or superseded in it

  const std::string path = SegmentPath(seg.seq);
  if (kept.empty() && !is_tail) {
    if (::unlink(path.c_str()) != 0) return IoError("cannot remove", path);
    segments_.erase(segments_.begin() + static_cast<ptrdiff_t>(index));
  } else {
    absl::StatusOr<std::string> old = ReadFile(path);
    if (!old.ok()) return old.status();
    std::string data(kSegmentMagic);
    data.reserve(static_cast<size_t>(kept_bytes));
    for (const Entry* e : kept) {
      data.append(*old, static_cast<size_t>(e->offset), e->frame_size);
    }
    if (seg.seq == cursor_seq_ && cursor_offset_ > kMagicSize) {
      // The cursor must not point into the new layout. Moving it first means a crash before
      // the rename replays this segment's delivered records again: duplicates, not a loss.
      if (absl::Status s = WriteCursor(seg.seq, 0); !s.ok()) return s;
      cursor_offset_ = 0;
    }
    if (is_tail && tail_fd_ >= 0) {
      ::close(tail_fd_);
      tail_fd_ = -1;
    }
    if (absl::Status s = ReplaceFile(path, data, options_.sync); !s.ok()) return s;
    if (is_tail) {
      tail_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (tail_fd_ < 0) return IoError("cannot open", path);
    }
    int64_t offset = kMagicSize;
    for (Entry* e : kept) {
      e->offset = offset;
      offset += e->frame_size;
    }
    segments_[index].size = kept_bytes;
  }
  if (absl::Status s = SyncDir(); !s.ok()) return s;
  bytes_ -= seg.size - (kept.empty() && !is_tail ? 0 : kept_bytes);
  if (!drop.empty()) {
    std::deque<Entry> remaining;
    for (Entry& e : entries_) {
      if (!drop.contains(e.id)) {
        remaining.push_back(std::move(e));
        continue;
      }
      auto it = latest_.find(e.key);
      if (it != latest_.end() && it->second == e.id) latest_.erase(it);
    }
    entries_ = std::move(remaining);
    *dropped += static_cast<int64_t>(drop.size());
  }
  return absl::OkStatus();
}

std::vector<SpooledReport> Spool::Peek(size_t max) {
  absl::MutexLock lock(&mu_);
  std::vector<SpooledReport> out;
  absl::flat_hash_set<uint64_t> unreadable;
  uint64_t open_seq = 0;
  int fd = -1;
  for (size_t i = 0; i < entries_.size() && out.size() < max; ++i) {
    const Entry& e = entries_[i];
    const std::string path = SegmentPath(e.seq);
    if (fd < 0 || open_seq != e.seq) {
      if (fd >= 0) ::close(fd);
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      open_seq = e.seq;
    }
    std::string buf(e.frame_size, '\0');
    ssize_t n = fd < 0 ? -1 : ::pread(fd, buf.data(), buf.size(), e.offset);
    spool::DecodedFrame frame{FrameStatus::kIncomplete, {}, 0};
    if (n == static_cast<ssize_t>(buf.size())) frame = DecodeFrame(buf);
    SpooledReport item{e.id, {}};
    if (frame.status != FrameStatus::kOk ||
        !item.report.ParseFromArray(frame.payload.data(), frame.payload.size())) {
      log::Error("spool: queued record unreadable, skipped",
                 {{"path", path}, {"offset", e.offset}});
      stats_.discarded_bytes += e.frame_size;
      unreadable.insert(e.id);
      continue;
    }
    out.push_back(std::move(item));
  }
  if (fd >= 0) ::close(fd);
  if (!unreadable.empty()) {
    std::erase_if(entries_, [&](const Entry& e) { return unreadable.contains(e.id); });
  }
  return out;
}

absl::Status Spool::Acknowledge(uint64_t id) {
  absl::MutexLock lock(&mu_);
  if (entries_.empty() || entries_.front().id > id) return absl::OkStatus();
  std::vector<Entry> done;
  while (!entries_.empty() && entries_.front().id <= id) {
    done.push_back(std::move(entries_.front()));
    entries_.pop_front();
  }
  const Entry& last = done.back();
  const int64_t offset = last.offset + last.frame_size;
  if (absl::Status s = WriteCursor(last.seq, offset); !s.ok()) {
    for (auto it = done.rbegin(); it != done.rend(); ++it) entries_.push_front(std::move(*it));
    return s;
  }
  cursor_seq_ = last.seq;
  cursor_offset_ = offset;
  for (const Entry& e : done) {
    auto it = latest_.find(e.key);
    if (it != latest_.end() && it->second == e.id) latest_.erase(it);
  }
  DeleteConsumedSegments();
  return absl::OkStatus();
}

void Spool::DeleteConsumedSegments() {
  const uint64_t first_needed =
      entries_.empty() ? std::numeric_limits<uint64_t>::max() : entries_.front().seq;
  bool deleted = false;
  while (!segments_.empty() && segments_.front().seq < first_needed) {
    if (segments_.size() == 1 && tail_fd_ >= 0) {
      ::close(tail_fd_);
      tail_fd_ = -1;
    }
    const std::string path = SegmentPath(segments_.front().seq);
    if (::unlink(path.c_str()) != 0) log::Warn("spool: cannot remove segment", {{"path", path}});
    bytes_ -= segments_.front().size;
    segments_.erase(segments_.begin());
    deleted = true;
  }
  if (deleted) {
    if (absl::Status s = SyncDir(); !s.ok()) log::Warn("spool", {{"error", s.ToString()}});
  }
}

bool Spool::empty() const {
  absl::MutexLock lock(&mu_);
  return entries_.empty();
}

SpoolStats Spool::Stats() const {
  absl::MutexLock lock(&mu_);
  SpoolStats s = stats_;
  s.records = static_cast<int64_t>(entries_.size());
  s.bytes = bytes_;
  return s;
}

}  // namespace tally::agent
