#include "server/storage/internal/mdb_status.h"

#include <lmdb.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/storage/internal/keys.h"

namespace tally::storage::internal {

absl::Status MdbStatus(std::string_view dir, std::string_view operation, int rc) {
  if (rc == MDB_SUCCESS) return absl::OkStatus();
  std::string message = absl::StrCat("shard ", AbslView(dir), ": ", AbslView(operation), ": ",
                                     mdb_strerror(rc), " (code ", rc, ")");
  switch (rc) {
    // The process or the machine is short of something that may come back.
    case MDB_READERS_FULL:
    case MDB_MAP_FULL:  // Only if growing the map failed too.
    case MDB_MAP_RESIZED:
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
    case EAGAIN:
    case EBUSY:
    case EINTR:
      return absl::UnavailableError(message);
    // The files are not what LMDB wrote: no retry helps, a rebuild does.
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return absl::DataLossError(message);
    // The environment cannot be used as it is until someone changes it.
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOENT:
    case ENOTDIR:
      return absl::FailedPreconditionError(message);
    case MDB_TXN_FULL:
      return absl::ResourceExhaustedError(absl::StrCat(message, "; commit smaller batches"));
    // MDB_BAD_*, MDB_DBS_FULL, MDB_PAGE_FULL, EINVAL, ...: we used LMDB wrongly. MDB_PANIC: a
    // meta page write failed and the environment refuses all work until it is reopened.
    default:
      return absl::InternalError(message);
  }
}

}  // namespace tally::storage::internal
