#include "server/storage/internal/mdb_status.h"

#include <lmdb.h>

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::storage::internal {
namespace {

using ::testing::HasSubstr;

TEST(MdbStatusTest, SuccessIsOk) { EXPECT_TRUE(MdbStatus("/d", "op", MDB_SUCCESS).ok()); }

TEST(MdbStatusTest, MessageNamesDirOperationAndCode) {
  const absl::Status status = MdbStatus("/data/s/3", "mdb_txn_commit", MDB_CORRUPTED);
  EXPECT_THAT(status.message(), HasSubstr("shard /data/s/3: mdb_txn_commit: MDB_CORRUPTED"));
  EXPECT_THAT(MdbStatus("/d", "mdb_env_open", ENOSPC).message(), HasSubstr("(code 28)"));
}

TEST(MdbStatusTest, CodeSaysWhatTheCallerShouldDo) {
  struct Case {
    int rc;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {MDB_READERS_FULL, absl::StatusCode::kUnavailable},
      {MDB_MAP_FULL, absl::StatusCode::kUnavailable},
      {EIO, absl::StatusCode::kUnavailable},
      {ENOSPC, absl::StatusCode::kUnavailable},
      {ENOMEM, absl::StatusCode::kUnavailable},
      {MDB_CORRUPTED, absl::StatusCode::kDataLoss},
      {MDB_PAGE_NOTFOUND, absl::StatusCode::kDataLoss},
      {MDB_INVALID, absl::StatusCode::kDataLoss},
      {MDB_VERSION_MISMATCH, absl::StatusCode::kFailedPrecondition},
      {MDB_INCOMPATIBLE, absl::StatusCode::kFailedPrecondition},
      {EACCES, absl::StatusCode::kFailedPrecondition},
      {EROFS, absl::StatusCode::kFailedPrecondition},
      {MDB_TXN_FULL, absl::StatusCode::kResourceExhausted},
      {MDB_PANIC, absl::StatusCode::kInternal},
      {MDB_BAD_TXN, absl::StatusCode::kInternal},
      {MDB_BAD_VALSIZE, absl::StatusCode::kInternal},
      {EINVAL, absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(MdbStatus("/d", "op", c.rc).code(), c.code) << mdb_strerror(c.rc);
  }
}

}  // namespace
}  // namespace tally::storage::internal
