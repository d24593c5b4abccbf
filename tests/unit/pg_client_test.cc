// The SQLSTATE the migration commands retry on comes from the server's
// error itself, never from a status's words.
#include "migration/pg_client.h"

#include <gtest/gtest.h>

#include "absl/strings/cord.h"

namespace pgshift::migration {
namespace {

TEST(SqlStateOf, IsTheServersCodeCarriedByTheStatus) {
  absl::Status failed = absl::AbortedError("backend old: 40P01 deadlock detected");
  failed.SetPayload(kSqlStatePayload, absl::Cord("40P01"));
  EXPECT_EQ(SqlStateOf(failed), "40P01");
}

TEST(SqlStateOf, IsNeverReadFromText) {
  // A status that quotes an error in its words is not that error: retried
  // on its code, a batch old had already recorded would be lost.
  EXPECT_EQ(SqlStateOf(absl::UnavailableError("the batch's copy could not be committed on new "
                                              "(backend new: 40001 could not serialize access)")),
            "");
  EXPECT_EQ(SqlStateOf(absl::AbortedError("backend old: 40P01 deadlock detected")), "");
  EXPECT_EQ(SqlStateOf(absl::OkStatus()), "");
}

}  // namespace
}  // namespace pgshift::migration
