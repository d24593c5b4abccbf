// The keys that mirrored writes across servers touched recently, and when
// they were settled: committed (or rolled back) on both sides. A shadow
// read's difference on a key that a write touched while the reads ran is
// explained by that write, and read again once the key is quiet; a
// difference nothing on record explains is a real one (SPEC section 5.4).
//
// A transaction's keys are held from the moment its write answered on the
// authoritative side (before either side commits, so before either side
// shows the change) until both sides have committed it. From just before
// the authoritative side commits, the hold is committing: the change shows
// there but not yet on the mirror, and a mirrored DELETE of the same keys
// waits for it (a DELETE on the mirror does not wait for a row whose
// insert is uncommitted, as an upsert does: it would miss it). One record
// per process, shared by its workers' sessions and shadow runners.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace pgshift::routing {

class WritesInFlight {
 public:
  using Clock = std::chrono::steady_clock;
  // Keys kept on record per table; past it every settled one is forgotten,
  // and a key not on record counts as settled when the last of those was.
  static constexpr size_t kMaxKeysPerTable = 50'000;
  // A transaction holding more keys of one table holds the whole table.
  static constexpr size_t kMaxHeldKeys = 10'000;

  // One transaction's keys, in flight until it is released (or destroyed).
  class Hold {
   public:
    Hold() = default;
    explicit Hold(WritesInFlight* record) : record_(record) {}
    Hold(Hold&& other) noexcept { *this = std::move(other); }
    Hold& operator=(Hold&& other) noexcept;
    ~Hold() { Release(); }

    // Keys (table, key) of a mirrored write; a key of nullopt (a table
    // without a key) holds its whole table.
    void Add(const std::vector<std::pair<std::string, std::optional<std::string>>>& keys);
    // Every key of `table` (a TRUNCATE, or more keys than kMaxHeldKeys).
    void AddTable(const std::string& table);
    // The authoritative side is about to commit; the mirror commits after.
    void Committing();
    // The writes are settled on both sides (or rolled back on both).
    void Release();
    bool empty() const { return keys_.empty() && tables_.empty(); }

   private:
    WritesInFlight* record_ = nullptr;
    std::vector<std::pair<std::string, std::string>> keys_;  // (table, key), as held
    std::vector<std::string> tables_;                        // held whole
    absl::flat_hash_map<std::string, size_t> held_per_table_;
    bool committing_ = false;
  };

  Hold NewHold() { return Hold(this); }

  // Whether a write can explain a difference on `key` of `table` between
  // reads that began at `began`: one is in flight, or one was settled since.
  bool Explains(const std::string& table, const std::string& key, Clock::time_point began) const;
  // Whether no write of `table` is in flight and none was settled since
  // `began`: reads begun then saw the same committed state on both sides.
  bool Quiet(const std::string& table, Clock::time_point began) const;
  // Whether a write of `table` holding `key` (or the whole table) is in
  // flight now.
  bool Writing(const std::string& table, const std::string& key) const;
  bool Writing(const std::string& table) const;
  // Whether a committing hold holds one of `keys` of `table` (or all of
  // it); a key of nullopt stands for any key of `table`.
  bool Committing(const std::string& table,
                  const std::vector<std::optional<std::string>>& keys) const;

  // Keys on record (in flight or recently settled), for tests.
  size_t KeysOnRecord(const std::string& table) const;

 private:
  struct KeyState {
    int holds = 0;
    int committing = 0;
    Clock::time_point settled;
  };
  struct TableState {
    absl::flat_hash_map<std::string, KeyState> keys;
    int holds = 0;                    // holds of any of its keys, or of all of it
    int whole_holds = 0;              // holds of all of it
    int committing = 0;               // committing holds of any of it
    int whole_committing = 0;         // committing holds of all of it
    Clock::time_point settled;        // the last hold's release
    Clock::time_point whole_settled;  // the last release of a hold of all of it
    Clock::time_point forgotten;      // keys settled before this are off record
  };

  void Forget(TableState& table) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, TableState> tables_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace pgshift::routing
