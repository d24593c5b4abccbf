// pgshift plan judges a flip by the statements the application sends now:
// a shape it stopped sending is left out, and the report says so.
#include "proxy/plan_command.h"

#include <gtest/gtest.h>

namespace pgshift::proxy {
namespace {

routing::QueryFingerprints::Row Shape(std::string fingerprint, absl::Time last_seen) {
  routing::QueryFingerprints::Row row;
  row.fingerprint = std::move(fingerprint);
  row.executions = 1;
  row.last_seen_ms = last_seen == absl::UnixEpoch() ? 0 : absl::ToUnixMillis(last_seen);
  return row;
}

TEST(KeepSeenSince, LeavesOutShapesLastSeenBeforeTheWindowAndSaysSo) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  RecordedShapes shapes;
  shapes.source = "the fleet's";
  shapes.rows = {Shape("recent", now - absl::Hours(1)), Shape("stale", now - absl::Hours(24 * 30)),
                 Shape("no time", absl::UnixEpoch()),
                 Shape("also stale", now - absl::Hours(24 * 8))};
  KeepSeenSince(shapes, absl::Hours(24 * 7), now);
  ASSERT_EQ(shapes.rows.size(), 2u);
  EXPECT_EQ(shapes.left_out, 2u);
  EXPECT_EQ(shapes.rows[0].fingerprint, "recent");
  EXPECT_EQ(shapes.rows[1].fingerprint, "no time");
  EXPECT_EQ(shapes.source,
            "the fleet's; 2 shapes last seen before 2027-01-08 08:00:00Z left out (--since 168h)");
}

TEST(KeepSeenSince, KeepsEverythingSeenWithinTheWindowAndSaysNothing) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  RecordedShapes shapes;
  shapes.source = "the instance's";
  shapes.rows = {Shape("a", now - absl::Minutes(89)), Shape("b", now)};
  KeepSeenSince(shapes, absl::Minutes(90), now);
  EXPECT_EQ(shapes.rows.size(), 2u);
  EXPECT_EQ(shapes.left_out, 0u);
  EXPECT_EQ(shapes.source, "the instance's");
}

}  // namespace
}  // namespace pgshift::proxy
