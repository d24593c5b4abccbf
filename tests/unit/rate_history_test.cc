// The status page's charts: rates between samples, bounded history.
#include "proxy/rate_history.h"

#include <gtest/gtest.h>

namespace pgshift::proxy {
namespace {

TEST(RateHistory, RatesBetweenSamplesAndTheShareMismatched) {
  RateHistory history;
  history.Record("t", {1000, 100, 0, 50, 0, 0});
  EXPECT_EQ(history.Json(), "{\"interval_s\":10,\"tables\":{\"t\":[]}}") << "one sample: no rate";
  history.Record("t", {1010, 130, 2, 250, 1, 5});
  EXPECT_EQ(
      history.Json(),
      "{\"interval_s\":10,\"tables\":{\"t\":[{\"at\":1010,\"writes\":3,\"mirror_failures\":0.2,"
      "\"shadow_compared\":20,\"shadow_persistent\":0.1,\"shadow_dropped\":0.5,"
      "\"mismatch_rate\":0.005}]}}");
  // A counter that went back (a restart's) reads 0, not a negative rate.
  history.Record("t", {1020, 10, 2, 250, 1, 5});
  EXPECT_NE(
      history.Json().find("{\"at\":1020,\"writes\":0,\"mirror_failures\":0,"
                          "\"shadow_compared\":0,\"shadow_persistent\":0,\"shadow_dropped\":0,"
                          "\"mismatch_rate\":0}"),
      std::string::npos)
      << history.Json();
}

TEST(RateHistory, KeepsTheLastSamplesOnly) {
  RateHistory history;
  for (int64_t i = 0; i < 200; ++i) {
    history.Record("t", {i * 10, static_cast<uint64_t>(i), 0, 0, 0, 0});
  }
  const std::string json = history.Json();
  size_t points = 0;
  for (size_t at = json.find("{\"at\":"); at != std::string::npos;
       at = json.find("{\"at\":", at + 1)) {
    ++points;
  }
  EXPECT_EQ(points, RateHistory::kSamples - 1);
  EXPECT_NE(json.find("{\"at\":1990,"), std::string::npos) << "the newest is kept";
  EXPECT_EQ(json.find("{\"at\":1000,"), std::string::npos) << "the oldest are gone";
}

}  // namespace
}  // namespace pgshift::proxy
