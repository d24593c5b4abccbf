// The write audit's arithmetic: when a count begins and what it blames.
#include "proxy/write_audit.h"

#include <gtest/gtest.h>

namespace pgshift::proxy {
namespace {

using std::chrono::seconds;
using Reading = WriteAudit::Reading;

class WriteAuditTest : public ::testing::Test {
 protected:
  void Round(uint64_t server, uint64_t proxied, const std::string& relation = "old:public.t") {
    audit_.Record(now_, {{"public.t", relation, server, proxied}}, {"public.t"});
    now_ += seconds(1);
  }
  WriteAudit audit_;
  WriteAudit::Clock::time_point now_{};
};

TEST_F(WriteAuditTest, AtStartTheCountBeginsAtOnceAndBlamesOnlyRowsPgshiftDidNotWrite) {
  Round(100, 0);  // other clients' rows from before pgshift started
  EXPECT_EQ(audit_.Unexplained("public.t"), 0u);
  Round(105, 8);  // eight written through pgshift, five published so far
  EXPECT_EQ(audit_.Unexplained("public.t"), 0u);
  Round(108, 8);
  EXPECT_EQ(audit_.Unexplained("public.t"), 0u);
  Round(111, 8);  // three more than pgshift's
  EXPECT_EQ(audit_.Unexplained("public.t"), 3u);
}

TEST_F(WriteAuditTest, ATableEnteringItsPhaseLaterWaitsOutThePublicationDelay) {
  audit_.Record(now_, {}, {});  // the first round, without the table
  now_ += seconds(1);
  // Entering dual-write: writes from old-only, not counted by pgshift, are
  // still being published for a while.
  for (uint64_t i = 0; i < 12; ++i) {
    Round(100 + i * 10, i);
    EXPECT_EQ(audit_.Unexplained("public.t"), std::nullopt) << i;
  }
  // The baseline: server 220 now, pgshift's count from 12 s before (0).
  Round(220, 12);
  EXPECT_EQ(audit_.Unexplained("public.t"), 0u);
  Round(225, 20);  // lagging publication is never blamed
  EXPECT_EQ(audit_.Unexplained("public.t"), 0u);
  // 30 more published, 20 written by pgshift since 12 s before the
  // baseline (its 12 then may have been published already: hidden rows of
  // those seconds can be missed, pgshift's own are never blamed).
  Round(250, 20);
  EXPECT_EQ(audit_.Unexplained("public.t"), 10u);
}

TEST_F(WriteAuditTest, ANewSideOrAResetOfTheStatisticsStartsAgain) {
  Round(10, 0);
  Round(15, 0);
  EXPECT_EQ(audit_.Unexplained("public.t"), 5u);
  Round(3, 0);  // pg_stat_reset()
  EXPECT_EQ(audit_.Unexplained("public.t"), std::nullopt);
  for (int i = 0; i < 12; ++i) Round(3, 0);
  EXPECT_EQ(audit_.Unexplained("public.t"), 0u);
  Round(50, 0, "new:public.t_v2");  // new-primary: new's writes are authoritative now
  EXPECT_EQ(audit_.Unexplained("public.t"), std::nullopt);
}

TEST_F(WriteAuditTest, AnUnansweredRoundKeepsTheCountAndLeavingThePhaseDropsIt) {
  Round(10, 0);
  Round(12, 0);
  audit_.Record(now_, {}, {"public.t"});
  EXPECT_EQ(audit_.Unexplained("public.t"), 2u);
  audit_.Record(now_, {}, {});
  EXPECT_EQ(audit_.Unexplained("public.t"), std::nullopt);
}

}  // namespace
}  // namespace pgshift::proxy
