#ifndef TALLY_SERVER_STORAGE_INTERNAL_MDB_STATUS_H_
#define TALLY_SERVER_STORAGE_INTERNAL_MDB_STATUS_H_

// Translation of LMDB return codes into absl::Status: the only place where MDB_* codes become the
// rest of Tally's error vocabulary.

#include <string_view>

#include "absl/status/status.h"

namespace tally::storage::internal {

// The status for LMDB return code `rc` (MDB_* or an errno) from `operation` on the shard in `dir`,
// e.g. "shard /x/y: mdb_txn_commit: MDB_PANIC: Update of meta page failed or environment had fatal
// error (code -30795)". OK if rc == MDB_SUCCESS. The code says what the caller should do:
//   UNAVAILABLE         environmental and transient (disk full, I/O error, reader table full):
//                       retry later;
//   DATA_LOSS           the files are damaged: rebuild the shard from the changelog;
//   FAILED_PRECONDITION the files or directory cannot be used as they are (permissions, another
//                       LMDB format): an operator must fix it;
//   RESOURCE_EXHAUSTED  one transaction grew too large: commit smaller batches;
//   INTERNAL            misuse of LMDB (a bug in this module) or MDB_PANIC (the environment is
//                       unusable until the shard is closed and reopened).
absl::Status MdbStatus(std::string_view dir, std::string_view operation, int rc);

}  // namespace tally::storage::internal

#endif  // TALLY_SERVER_STORAGE_INTERNAL_MDB_STATUS_H_
