// Prepared mirrors' names and what recovery does with one: only a known
// outcome is acted on; another deployment's, a settling session's and a
// young one (perhaps another instance's, in flight) are left alone.
#include "proxy/two_phase.h"

#include <gtest/gtest.h>

namespace pgshift::proxy {
namespace {

using routing::BackendId;

TEST(PreparedTransactionId, NamesTheDeploymentTheServerAndTheTransaction) {
  const std::string gid = PreparedTransactionId("3f2a9c0b1d4e", BackendId::kOld, "1234");
  EXPECT_EQ(gid, "pgshift_3f2a9c0b1d4e_old_1234");
  std::optional<PreparedMirrorId> id = ParsePreparedTransactionId(gid);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->deployment, "3f2a9c0b1d4e");
  EXPECT_EQ(id->authoritative, BackendId::kOld);
  EXPECT_EQ(id->xid, 1234);
  id = ParsePreparedTransactionId(PreparedTransactionId("blue", BackendId::kNew, "7"));
  ASSERT_TRUE(id);
  EXPECT_EQ(id->authoritative, BackendId::kNew);
}

TEST(PreparedTransactionId, OneWrittenBeforeDeploymentsHadNamesIsStillRead) {
  std::optional<PreparedMirrorId> id = ParsePreparedTransactionId("pgshift_old_99");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->deployment, "");
  EXPECT_EQ(id->xid, 99);
}

TEST(PreparedTransactionId, OthersAreNotPgshifts) {
  for (const char* gid :
       {"pgshift_", "pgshift_d_old_", "pgshift_d_middle_5", "pgshift_d_old_x", "pgshift_d_old_-3",
        "pgshift__old_5", "app_d_old_5", "jdbc_xa_1", "pgshift_a_b_old_5"}) {
    EXPECT_FALSE(ParsePreparedTransactionId(gid)) << gid;
  }
}

TEST(ClassifyLeftover, OneYoungerThanTheMinimumAgeIsLeftToWhicheverInstanceIsSettlingIt) {
  const PreparedMirrorId ours{"blue", BackendId::kOld, 5};
  EXPECT_EQ(ClassifyLeftover(ours, 29.9, "blue", 30), Leftover::kInFlight);
  EXPECT_EQ(ClassifyLeftover(ours, 30, "blue", 30), Leftover::kOurs);
  EXPECT_EQ(ClassifyLeftover(ours, 0, "blue", 0), Leftover::kOurs) << "0: no minimum";
}

TEST(ClassifyLeftover, AnotherDeploymentsIsReportedOnceItIsOldEnoughToBeALeftover) {
  const PreparedMirrorId theirs{"green", BackendId::kOld, 5};
  EXPECT_EQ(ClassifyLeftover(theirs, 1, "blue", 30), Leftover::kInFlight)
      << "its live sessions' are not news";
  EXPECT_EQ(ClassifyLeftover(theirs, 31, "blue", 30), Leftover::kOtherDeployment);
  const PreparedMirrorId unnamed{"", BackendId::kOld, 5};
  EXPECT_EQ(ClassifyLeftover(unnamed, 31, "blue", 30), Leftover::kOurs)
      << "written before deployments had names";
}

TEST(ChooseResolution, OnlyAKnownOutcomeIsActedOn) {
  EXPECT_EQ(ChooseResolution("committed", false).resolution, Resolution::kCommit);
  EXPECT_EQ(ChooseResolution("aborted", false).resolution, Resolution::kRollBack);
  ResolutionChoice unknown = ChooseResolution(std::nullopt, false);
  EXPECT_EQ(unknown.resolution, Resolution::kLeave) << "never taken for a rollback";
  EXPECT_NE(unknown.why.find("too old"), std::string_view::npos) << unknown.why;
  ResolutionChoice running = ChooseResolution("in progress", false);
  EXPECT_EQ(running.resolution, Resolution::kLeave);
  EXPECT_NE(running.why.find("in progress"), std::string_view::npos) << running.why;
}

TEST(ChooseResolution, ASettlingSessionsMirrorIsLeftToItWithoutAReport) {
  ResolutionChoice choice = ChooseResolution("committed", true);
  EXPECT_EQ(choice.resolution, Resolution::kLeave);
  EXPECT_TRUE(choice.why.empty());
}

TEST(SettlingMirror, RegistersItsGidForAsLongAsItLives) {
  const std::string gid = "pgshift_t_old_1";
  {
    SettlingMirror settling(gid);
    EXPECT_TRUE(SettlingMirrors::Get().Contains(gid));
    SettlingMirror moved = std::move(settling);
    EXPECT_TRUE(SettlingMirrors::Get().Contains(gid));
    EXPECT_EQ(moved.gid(), gid);
    EXPECT_EQ(settling.gid(), "");  // NOLINT(bugprone-use-after-move): moved from on purpose
    moved = SettlingMirror();
    EXPECT_FALSE(SettlingMirrors::Get().Contains(gid));
  }
  { SettlingMirror empty; }
  EXPECT_FALSE(SettlingMirrors::Get().Contains(gid));
}

}  // namespace
}  // namespace pgshift::proxy
