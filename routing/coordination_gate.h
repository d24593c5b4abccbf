// What every session of an instance consults, with coordination on (SPEC
// section 9), before a statement touches a configured table: whether this
// instance's lease still vouches for its phases, and whether a fenced flip
// holds the table. The coordinator (proxy/coordinator.h) sets both; the
// sessions read them. Thread-safe: sessions run on the worker threads, the
// coordinator on its own.
//
// A flip's fence on an instance: new transactions that mention the table
// wait before they are planned (Session::HoldForFlip); the instance
// acknowledges once no transaction that touched the table is open and no
// planning pass that began before the fence is under way (a pass began
// before the fence may still enter the table; one after it has seen the
// fence). After the acknowledgement nothing may enter the table under the
// old phase: Enter says so, as a last guard, if a statement got past the
// mention test.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace pgshift::routing {

class CoordinationGate {
 public:
  using Clock = std::chrono::steady_clock;

  // The lease. Valid until `until`; never valid before the first renewal.
  void Renewed(Clock::time_point until, Clock::time_point now = Clock::now());
  bool LeaseValid(Clock::time_point now = Clock::now()) const;
  // Counts the renewals that came after the lease had lapsed: a
  // transaction that entered its tables in an earlier epoch is not
  // vouched for by the lease it has now.
  uint64_t lease_epoch() const { return lease_epoch_.load(std::memory_order_acquire); }
  // The phases the instance runs were read from the coordinator at least
  // once: until then no configured table is served.
  void Synced() { synced_.store(true, std::memory_order_release); }
  bool synced() const { return synced_.load(std::memory_order_acquire); }

  // Sessions.
  bool AnyFenced() const { return any_fenced_.load(std::memory_order_seq_cst); }
  bool Fenced(std::string_view table) const;
  std::vector<std::string> FencedTables() const;
  // A planning pass: from before a session looks for fenced tables in what
  // the client sent until its statements are planned.
  void BeginPass();
  void EndPass();
  enum class Entry {
    kEntered,   // counted as in flight on the table until Leave
    kFlipping,  // the table's flip is acknowledged: not under the old phase
    kStale,     // the table's phase changed after `settings_generation`
  };
  Entry Enter(const std::string& table, uint64_t session, uint64_t settings_generation);
  void Leave(const std::string& table, uint64_t session);
  // The table's phase changed after settings generation `generation`: a
  // transaction planned under it must not go on with it.
  bool ChangedSince(const std::string& table, uint64_t generation) const;
  // Some table's phase changed after settings generation `generation`.
  bool PhasesChangedSince(uint64_t generation) const {
    return latest_change_.load(std::memory_order_acquire) > generation;
  }

  // The server, when it installs settings that change `tables`' phases.
  void PhasesChanged(const std::vector<std::string>& tables, uint64_t generation);

  // The coordinator.
  // Fences `tables` for flip `flip` (a no-op when already fenced for it).
  void Fence(int64_t flip, const std::vector<std::string>& tables);
  // The flip under way, if any.
  std::optional<int64_t> fence() const;
  // True once nothing is in flight on the fenced tables, and from then on
  // entries into them are refused (Entry::kFlipping) until Lift. Else
  // `holder` gets the session that has been in flight longest on them.
  struct Holder {
    std::string table;
    uint64_t session = 0;
    Clock::time_point since;
  };
  bool TryAcknowledge(Holder* holder);
  // The flip ended (committed, its phases installed first; or aborted).
  void Lift();

 private:
  mutable absl::Mutex mutex_;
  std::atomic<int64_t> lease_until_{0};  // steady clock, ns since epoch
  std::atomic<uint64_t> lease_epoch_{0};
  std::atomic<bool> synced_{false};
  std::atomic<bool> any_fenced_{false};
  std::atomic<uint64_t> latest_change_{0};    // the newest generation in changed_in_
  int64_t flip_ ABSL_GUARDED_BY(mutex_) = 0;  // 0: none
  absl::flat_hash_set<std::string> fenced_ ABSL_GUARDED_BY(mutex_);
  bool acknowledged_ ABSL_GUARDED_BY(mutex_) = false;
  std::atomic<int> passes_{0};
  // Per table: the sessions whose open transaction touched it, since when.
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint64_t, Clock::time_point>> in_flight_
      ABSL_GUARDED_BY(mutex_);
  // Per table: the settings generation its phase last changed in.
  absl::flat_hash_map<std::string, uint64_t> changed_in_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace pgshift::routing
