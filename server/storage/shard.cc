#include "server/storage/shard.h"

#include <lmdb.h>

#include <cassert>
#include <filesystem>
#include <limits>
#include <mutex>
#include <system_error>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "server/storage/internal/keys.h"
#include "server/storage/internal/mdb_status.h"
#include "server/storage/internal/reads.h"
#include "server/storage/internal/shard_impl.h"

namespace tally::storage {

using records::v1::ShardMeta;
using records::v1::StoredState;

absl::StatusOr<std::unique_ptr<Shard>> Shard::Open(const std::string& dir,
                                                   const ShardOptions& options) {
  absl::StatusOr<std::unique_ptr<internal::ShardImpl>> shard =
      internal::ShardImpl::Create(dir, options);
  if (!shard.ok()) return shard.status();
  return std::move(*shard);
}

namespace internal {
namespace {

// The canonical paths of the directories open in this process. Guarded by ClaimedDirsMutex().
absl::flat_hash_set<std::string>& ClaimedDirs() {
  static auto* dirs = new absl::flat_hash_set<std::string>();
  return *dirs;
}
std::mutex& ClaimedDirsMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}

class ReaderImpl final : public Reader {
 public:
  // Takes over `txn`, a transaction from shard->BeginRead().
  ReaderImpl(ShardImpl* shard, MDB_txn* txn) : shard_(shard), txn_(txn) {}
  ReaderImpl(const ReaderImpl&) = delete;
  ReaderImpl& operator=(const ReaderImpl&) = delete;
  ~ReaderImpl() override { shard_->EndRead(txn_); }

  absl::StatusOr<std::optional<StoredState>> GetState(std::string_view object_key) override {
    return ReadState(shard_->dbs(), txn_, object_key);
  }
  absl::StatusOr<std::optional<ObjectData>> GetObject(std::string_view object_key) override {
    return ReadObject(shard_->dbs(), txn_, object_key);
  }
  absl::StatusOr<std::vector<std::pair<std::string, StoredState>>> Scan(std::string_view prefix,
                                                                        std::string_view after,
                                                                        bool inclusive,
                                                                        size_t limit) override {
    return ScanStates(shard_->dbs(), txn_, prefix, after, inclusive, limit);
  }
  absl::StatusOr<std::vector<std::pair<std::string, ObjectData>>> ScanObjects(
      std::string_view prefix, std::string_view after, bool inclusive, size_t limit) override {
    return internal::ScanObjects(shard_->dbs(), txn_, prefix, after, inclusive, limit);
  }
  absl::StatusOr<std::vector<std::string>> ExpiredObjects(int64_t now_ms, size_t limit) override {
    return ReadExpiredObjects(shard_->dbs(), txn_, now_ms, limit);
  }
  absl::StatusOr<ShardMeta> GetMeta() override { return ReadMeta(shard_->dbs(), txn_); }
  absl::StatusOr<uint64_t> CountStates() override {
    return internal::CountStates(shard_->dbs(), txn_);
  }

 private:
  ShardImpl* const shard_;
  MDB_txn* const txn_;
};

}  // namespace

absl::StatusOr<DirClaim> DirClaim::Acquire(std::string canonical_dir) {
  std::lock_guard lock(ClaimedDirsMutex());
  if (!ClaimedDirs().insert(canonical_dir).second) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", canonical_dir, ": already open in this process"));
  }
  return DirClaim(std::move(canonical_dir));
}

DirClaim::~DirClaim() {
  if (dir_.empty()) return;
  std::lock_guard lock(ClaimedDirsMutex());
  ClaimedDirs().erase(dir_);
}

absl::Status WriteTxn::Begin(MDB_env* env) {
  assert(txn_ == nullptr);
  const int rc = mdb_txn_begin(env, nullptr, 0, &txn_);
  if (rc != MDB_SUCCESS) {
    txn_ = nullptr;
    return Fail("mdb_txn_begin", rc);
  }
  return absl::OkStatus();
}

absl::Status WriteTxn::Commit() {
  // mdb_txn_commit frees the transaction whether or not it succeeds.
  const int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
  if (rc != MDB_SUCCESS) return Fail("mdb_txn_commit", rc);
  return absl::OkStatus();
}

void WriteTxn::Abort() {
  if (txn_ != nullptr) mdb_txn_abort(std::exchange(txn_, nullptr));
}

absl::Status WriteTxn::Fail(std::string_view operation, int rc) {
  if (rc_ == MDB_SUCCESS) rc_ = rc;
  return MdbStatus(dbs_.dir, operation, rc);
}

absl::Status WriteTxn::Put(MDB_dbi dbi, std::string_view db_name, std::string_view key,
                           const google::protobuf::MessageLite& value) {
  MDB_val k = ToVal(key);
  MDB_val v{value.ByteSizeLong(), nullptr};
  const int rc = mdb_put(txn_, dbi, &k, &v, MDB_RESERVE);
  if (rc != MDB_SUCCESS) return Fail(absl::StrCat("mdb_put(", AbslView(db_name), ")"), rc);
  value.SerializeWithCachedSizesToArray(static_cast<uint8_t*>(v.mv_data));
  return absl::OkStatus();
}

absl::Status WriteTxn::CursorPut(MDB_cursor* cursor, std::string_view db_name, std::string_view key,
                                 const google::protobuf::MessageLite& value, unsigned flags) {
  MDB_val k = ToVal(key);
  MDB_val v{value.ByteSizeLong(), nullptr};
  const int rc = mdb_cursor_put(cursor, &k, &v, flags | MDB_RESERVE);
  if (rc != MDB_SUCCESS) {
    return Fail(absl::StrCat("mdb_cursor_put(", AbslView(db_name), ")"), rc);
  }
  value.SerializeWithCachedSizesToArray(static_cast<uint8_t*>(v.mv_data));
  return absl::OkStatus();
}

absl::Status WriteTxn::CursorPutEmpty(MDB_cursor* cursor, std::string_view db_name,
                                      std::string_view key, unsigned flags) {
  MDB_val k = ToVal(key);
  MDB_val v{0, nullptr};
  const int rc = mdb_cursor_put(cursor, &k, &v, flags);
  if (rc != MDB_SUCCESS) {
    return Fail(absl::StrCat("mdb_cursor_put(", AbslView(db_name), ")"), rc);
  }
  return absl::OkStatus();
}

absl::Status WriteTxn::CursorDelete(MDB_cursor* cursor, std::string_view db_name,
                                    std::string_view key) {
  MDB_val k = ToVal(key);
  MDB_val v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET);
  if (rc == MDB_NOTFOUND) return absl::OkStatus();
  if (rc == MDB_SUCCESS) rc = mdb_cursor_del(cursor, 0);
  if (rc != MDB_SUCCESS) {
    return Fail(absl::StrCat("mdb_cursor_del(", AbslView(db_name), ")"), rc);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ShardImpl>> ShardImpl::Create(const std::string& dir,
                                                             const ShardOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", dir, ": create directory: ", ec.message()));
  }
  const fs::path canonical = fs::canonical(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", dir, ": resolve directory: ", ec.message()));
  }
  absl::StatusOr<DirClaim> claim = DirClaim::Acquire(canonical.string());
  if (!claim.ok()) return claim.status();
  // A new environment takes its map size from us; an existing one from its files, as long as
  // that is not below what we ask for (see below).
  const bool fresh = !fs::exists(canonical / "data.mdb", ec);

  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc != MDB_SUCCESS) return MdbStatus(dir, "mdb_env_create", rc);
  absl::Cleanup close_env = [env] { mdb_env_close(env); };
  if ((rc = mdb_env_set_maxdbs(env, 3)) != MDB_SUCCESS) {
    return MdbStatus(dir, "mdb_env_set_maxdbs", rc);
  }
  if ((rc = mdb_env_set_maxreaders(env, options.max_readers)) != MDB_SUCCESS) {
    return MdbStatus(dir, "mdb_env_set_maxreaders", rc);
  }
  if (fresh && (rc = mdb_env_set_mapsize(env, options.initial_map_size)) != MDB_SUCCESS) {
    return MdbStatus(dir, "mdb_env_set_mapsize", rc);
  }
  // MDB_NOTLS: a read transaction belongs to its Reader, not to a thread, so Readers may be
  // used from any thread and many may be alive on one thread.
  const unsigned flags = MDB_NOTLS | (options.no_sync ? MDB_NOSYNC : 0);
  if ((rc = mdb_env_open(env, dir.c_str(), flags, 0644)) != MDB_SUCCESS) {
    return MdbStatus(dir, "mdb_env_open", rc);
  }
  // kMaxObjectAndAgentIdSize promises callers what the expiry key needs on top of it.
  if (const size_t max_key = mdb_env_get_maxkeysize(env);
      max_key < kMaxObjectAndAgentIdSize + kExpiryTimeSize + 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", dir, ": this LMDB build limits keys to ", max_key, " bytes"));
  }
  MDB_envinfo info;
  if ((rc = mdb_env_info(env, &info)) != MDB_SUCCESS) return MdbStatus(dir, "mdb_env_info", rc);
  uint64_t map_size = info.me_mapsize;
  if (map_size < options.initial_map_size) {
    // An existing shard opened with a larger initial size: start there instead of growing to it
    // by doublings, one failed commit each.
    if ((rc = mdb_env_set_mapsize(env, options.initial_map_size)) != MDB_SUCCESS) {
      return MdbStatus(dir, "mdb_env_set_mapsize", rc);
    }
    map_size = options.initial_map_size;
  }
  std::move(close_env).Cancel();
  std::unique_ptr<ShardImpl> shard(
      new ShardImpl(dir, std::move(*claim), env, map_size, options.no_sync));
  if (absl::Status status = shard->Init(); !status.ok()) return status;
  return shard;
}

ShardImpl::ShardImpl(std::string dir, DirClaim claim, MDB_env* env, uint64_t map_size, bool no_sync)
    : dir_(std::move(dir)),
      claim_(std::move(claim)),
      env_(env),
      no_sync_(no_sync),
      map_size_(map_size) {
  dbs_.dir = dir_;
}

ShardImpl::~ShardImpl() {
  {
    std::lock_guard lock(mu_);
    assert(active_reads_ == 0 && "a Reader outlived its Shard");
    assert(!batch_open_ && "a WriteBatch outlived its Shard");
    for (MDB_txn* txn : idle_read_txns_) mdb_txn_abort(txn);
    idle_read_txns_.clear();
  }
  mdb_env_close(env_);
}

absl::Status ShardImpl::Init() {
  return Write([this](WriteTxn& txn) -> absl::Status {
    const std::pair<const char*, MDB_dbi*> dbs[] = {
        {"objects", &dbs_.objects},
        {"expiry", &dbs_.expiry},
        {"meta", &dbs_.meta},
    };
    for (const auto& [name, dbi] : dbs) {
      if (const int rc = mdb_dbi_open(txn.txn(), name, MDB_CREATE, dbi); rc != MDB_SUCCESS) {
        return txn.Fail(absl::StrCat("mdb_dbi_open(", name, ")"), rc);
      }
    }
    absl::StatusOr<std::optional<ShardMeta>> meta = ReadMetaIfPresent(dbs_, txn.txn());
    if (!meta.ok()) return meta.status();
    if (meta->has_value()) {
      if ((*meta)->schema_version() != kShardSchemaVersion) {
        return absl::FailedPreconditionError(
            absl::StrCat("shard ", dir_, ": schema version ", (*meta)->schema_version(),
                         " on disk, this build reads version ", kShardSchemaVersion,
                         "; move the directory away to rebuild the shard from the changelog"));
      }
      return absl::OkStatus();  // The commit makes the database handles usable.
    }
    ShardMeta fresh;
    fresh.set_schema_version(kShardSchemaVersion);
    return txn.Put(dbs_.meta, "meta", kMetaKey, fresh);
  });
}

absl::Status ShardImpl::Write(absl::FunctionRef<absl::Status(WriteTxn&)> apply, bool sync) {
  // LMDB has no per-transaction sync flag, but MDB_NOSYNC may be switched at any time, and only
  // the one writer (us) looks at it when committing.
  const bool switch_sync = !sync && !no_sync_;
  for (;;) {
    WriteTxn txn(dbs_);
    absl::Status status = txn.Begin(env_);
    if (status.ok()) status = apply(txn);
    if (status.ok()) {
      if (switch_sync) mdb_env_set_flags(env_, MDB_NOSYNC, 1);
      status = txn.Commit();
      if (switch_sync) mdb_env_set_flags(env_, MDB_NOSYNC, 0);
    }
    if (status.ok() || txn.rc() != MDB_MAP_FULL) return status;
    // mdb_env_set_mapsize needs every transaction of the process ended, ours included.
    txn.Abort();
    if (status = Grow(); !status.ok()) return status;
  }
}

absl::Status ShardImpl::Grow() {
  absl::Status status;
  {
    std::unique_lock lock(mu_);
    // New readers wait from here on, so a steady stream of them cannot starve the resize.
    resizing_ = true;
    cv_.wait(lock, [this] { return active_reads_ == 0; });
    MDB_envinfo info;
    if (map_size_ > std::numeric_limits<uint64_t>::max() / 2) {
      status = MdbStatus(dir_, "grow map", MDB_MAP_FULL);
    } else if (int rc = mdb_env_set_mapsize(env_, map_size_ * 2); rc != MDB_SUCCESS) {
      status = MdbStatus(dir_, "mdb_env_set_mapsize", rc);
    } else if ((rc = mdb_env_info(env_, &info)) != MDB_SUCCESS) {
      status = MdbStatus(dir_, "mdb_env_info", rc);
    } else {
      map_size_ = info.me_mapsize;
    }
    resizing_ = false;
  }
  cv_.notify_all();
  return status;
}

absl::StatusOr<MDB_txn*> ShardImpl::BeginRead() {
  MDB_txn* txn = nullptr;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !resizing_; });
    ++active_reads_;
    if (!idle_read_txns_.empty()) {
      txn = idle_read_txns_.back();
      idle_read_txns_.pop_back();
    }
  }
  int rc;
  const char* operation;
  if (txn != nullptr) {
    operation = "mdb_txn_renew";
    if ((rc = mdb_txn_renew(txn)) != MDB_SUCCESS) mdb_txn_abort(txn);
  } else {
    operation = "mdb_txn_begin(read-only)";
    rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  }
  if (rc != MDB_SUCCESS) {
    LeaveActiveReads(nullptr);
    return MdbStatus(dir_, operation, rc);
  }
  return txn;
}

void ShardImpl::EndRead(MDB_txn* txn) {
  // Reset before leaving the active count: a reset transaction holds no snapshot, so it may
  // survive a resize (renew reads the new map).
  mdb_txn_reset(txn);
  LeaveActiveReads(txn);
}

void ShardImpl::LeaveActiveReads(MDB_txn* reset_txn) {
  bool wake_resizer;
  {
    std::lock_guard lock(mu_);
    --active_reads_;
    if (reset_txn != nullptr) {
      if (idle_read_txns_.size() < kMaxIdleReadTxns) {
        idle_read_txns_.push_back(reset_txn);
      } else {
        mdb_txn_abort(reset_txn);
      }
    }
    wake_resizer = resizing_ && active_reads_ == 0;
  }
  if (wake_resizer) cv_.notify_all();
}

absl::StatusOr<std::unique_ptr<Reader>> ShardImpl::NewReader() {
  absl::StatusOr<MDB_txn*> txn = BeginRead();
  if (!txn.ok()) return txn.status();
  return std::make_unique<ReaderImpl>(this, *txn);
}

absl::StatusOr<std::unique_ptr<WriteBatch>> ShardImpl::NewWriteBatch() {
  {
    std::lock_guard lock(mu_);
    if (batch_open_) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", dir_, ": another WriteBatch is open"));
    }
    batch_open_ = true;
  }
  return NewWriteBatchImpl(this);
}

void ShardImpl::BatchClosed() {
  std::lock_guard lock(mu_);
  batch_open_ = false;
}

absl::Status ShardImpl::Sync() { return MdbStatus(dir_, "mdb_env_sync", mdb_env_sync(env_, 1)); }

uint64_t ShardImpl::map_size() const {
  std::lock_guard lock(mu_);
  return map_size_;
}

}  // namespace internal
}  // namespace tally::storage
