#include "proxy/session/query_timer.h"

#include <gtest/gtest.h>

namespace pgshift::proxy {
namespace {

using std::chrono::milliseconds;
using Clock = QueryTimer::Clock;

TEST(QueryTimer, EachAnswerPairsWithTheOldestSend) {
  QueryTimer timer;
  Clock::time_point t0 = Clock::now();
  timer.Sent(t0);
  timer.Sent(t0 + milliseconds(5));
  EXPECT_EQ(timer.pending(), 2u);
  EXPECT_EQ(timer.Answered(t0 + milliseconds(7)), milliseconds(7));
  EXPECT_EQ(timer.Answered(t0 + milliseconds(8)), milliseconds(3));
  EXPECT_EQ(timer.pending(), 0u);
}

TEST(QueryTimer, PastItsRoomSendsAreCountedUntilTheBacklogDrains) {
  QueryTimer timer;
  Clock::time_point t0 = Clock::now();
  for (uint32_t i = 0; i < QueryTimer::kTimed + 2; ++i) timer.Sent(t0);
  EXPECT_EQ(timer.pending(), QueryTimer::kTimed + 2);
  for (uint32_t i = 0; i < QueryTimer::kTimed; ++i) {
    EXPECT_TRUE(timer.Answered(t0 + milliseconds(1)).has_value());
  }
  // One answered frees room, but a send now is behind the untimed ones: it
  // stays untimed, or it would pair with their answers.
  timer.Sent(t0 + milliseconds(50));
  EXPECT_FALSE(timer.Answered(t0 + milliseconds(60)).has_value());
  EXPECT_FALSE(timer.Answered(t0 + milliseconds(60)).has_value());
  EXPECT_FALSE(timer.Answered(t0 + milliseconds(60)).has_value());
  EXPECT_EQ(timer.pending(), 0u);
  timer.Sent(t0 + milliseconds(70));
  EXPECT_EQ(timer.Answered(t0 + milliseconds(72)), milliseconds(2));
}

TEST(QueryTimer, AnAnswerWithNothingSentIsIgnored) {
  QueryTimer timer;
  EXPECT_FALSE(timer.Answered(Clock::now()).has_value());
  EXPECT_EQ(timer.pending(), 0u);
}

}  // namespace
}  // namespace pgshift::proxy
