// The gate sessions pass before touching a configured table, with
// coordination on: a flip's fence is acknowledged only once nothing is in
// flight on its tables, nothing enters them under the old phase after
// that, and the lease vouches for a while only.
#include "routing/coordination_gate.h"

#include <gtest/gtest.h>

namespace pgshift::routing {
namespace {

using Entry = CoordinationGate::Entry;
using Clock = CoordinationGate::Clock;

TEST(CoordinationGate, TheLeaseIsValidUntilItsTimeOnly) {
  CoordinationGate gate;
  EXPECT_FALSE(gate.LeaseValid());
  const Clock::time_point now = Clock::now();
  gate.Renewed(now + std::chrono::seconds(2));
  EXPECT_TRUE(gate.LeaseValid(now));
  EXPECT_TRUE(gate.LeaseValid(now + std::chrono::milliseconds(1999)));
  EXPECT_FALSE(gate.LeaseValid(now + std::chrono::seconds(2)));
}

TEST(CoordinationGate, ARenewalAfterALapseStartsANewEpoch) {
  CoordinationGate gate;
  const Clock::time_point now = Clock::now();
  gate.Renewed(now + std::chrono::seconds(2), now);
  gate.Renewed(now + std::chrono::seconds(3), now + std::chrono::seconds(1));
  EXPECT_EQ(gate.lease_epoch(), 0u) << "renewed in time";
  gate.Renewed(now + std::chrono::seconds(9), now + std::chrono::seconds(4));
  EXPECT_EQ(gate.lease_epoch(), 1u) << "renewed after it had lapsed";
}

TEST(CoordinationGate, AFlipIsAcknowledgedOnceItsTableIsDrained) {
  CoordinationGate gate;
  EXPECT_EQ(gate.Enter("public.t", 1, 0), Entry::kEntered);
  EXPECT_EQ(gate.Enter("public.other", 2, 0), Entry::kEntered);
  gate.Fence(7, {"public.t"});
  EXPECT_TRUE(gate.AnyFenced());
  EXPECT_TRUE(gate.Fenced("public.t"));
  EXPECT_FALSE(gate.Fenced("public.other"));
  CoordinationGate::Holder holder;
  EXPECT_FALSE(gate.TryAcknowledge(&holder));
  EXPECT_EQ(holder.session, 1u);
  EXPECT_EQ(holder.table, "public.t");
  // Before the acknowledgement a transaction may still enter (it is then
  // in flight, and waited for).
  EXPECT_EQ(gate.Enter("public.t", 3, 0), Entry::kEntered);
  gate.Leave("public.t", 1);
  EXPECT_FALSE(gate.TryAcknowledge(&holder));
  EXPECT_EQ(holder.session, 3u);
  gate.Leave("public.t", 3);
  // Another table's transaction holds nothing.
  EXPECT_TRUE(gate.TryAcknowledge(&holder));
  // Acknowledged: nothing enters under the old phase.
  EXPECT_EQ(gate.Enter("public.t", 4, 0), Entry::kFlipping);
  EXPECT_EQ(gate.Enter("public.other", 4, 0), Entry::kEntered);
  gate.Lift();
  EXPECT_FALSE(gate.AnyFenced());
  EXPECT_EQ(gate.Enter("public.t", 4, 0), Entry::kEntered);
}

TEST(CoordinationGate, APlanningPassUnderWayHoldsTheAcknowledgement) {
  CoordinationGate gate;
  gate.BeginPass();  // began before the fence: it may enter the table yet
  gate.Fence(1, {"public.t"});
  CoordinationGate::Holder holder;
  EXPECT_FALSE(gate.TryAcknowledge(&holder));
  EXPECT_EQ(gate.Enter("public.t", 9, 0), Entry::kEntered);
  gate.EndPass();
  EXPECT_FALSE(gate.TryAcknowledge(&holder));
  EXPECT_EQ(holder.session, 9u);
  gate.Leave("public.t", 9);
  EXPECT_TRUE(gate.TryAcknowledge(&holder));
}

TEST(CoordinationGate, ATransactionPlannedBeforeAPhaseChangeIsStaleOnThatTable) {
  CoordinationGate gate;
  gate.PhasesChanged({"public.t"}, 5);
  EXPECT_TRUE(gate.ChangedSince("public.t", 4));
  EXPECT_FALSE(gate.ChangedSince("public.t", 5));
  EXPECT_FALSE(gate.ChangedSince("public.other", 4));
  EXPECT_EQ(gate.Enter("public.t", 1, 4), Entry::kStale);
  EXPECT_EQ(gate.Enter("public.t", 1, 5), Entry::kEntered);
}

TEST(CoordinationGate, ANewFlipReplacesAnAbortedOne) {
  CoordinationGate gate;
  gate.Fence(1, {"public.t"});
  EXPECT_EQ(gate.fence(), 1);
  gate.Fence(1, {"public.u"});  // the same flip seen again: unchanged
  EXPECT_TRUE(gate.Fenced("public.t"));
  gate.Lift();
  EXPECT_EQ(gate.fence(), std::nullopt);
  gate.Fence(2, {"public.u"});
  EXPECT_FALSE(gate.Fenced("public.t"));
  EXPECT_TRUE(gate.Fenced("public.u"));
}

}  // namespace
}  // namespace pgshift::routing
