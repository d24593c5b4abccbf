// What the application sends to configured tables, one entry per statement
// shape (libpg_query's fingerprint: equal for statements that differ only
// in constants or parameters): its normalized text, the tables it names,
// whether it writes, how often it ran or was refused, when it last ran.
// The dry-run of a flip replays these; with coordination on, every
// instance flushes its own to the database (pgshift_fingerprints).
//
// Bounded: past max_entries new shapes are counted as untracked, not kept.
// Entries live as long as the registry (plans hold pointers to them), and
// their counters are atomics, bumped by every execution on any worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace pgshift::routing {

struct QueryFingerprint {
  std::string fingerprint;  // hex
  std::string normalized;   // constants as $n: no data
  std::vector<std::string> tables;
  bool writes = false;
  std::atomic<uint64_t> executions{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<int64_t> last_seen_ms{0};  // Unix time

  // One execution, or one refusal, of a statement of this shape.
  void Seen(bool was_refused);
};

class QueryFingerprints {
 public:
  static constexpr size_t kMaxEntries = 2000;
  explicit QueryFingerprints(size_t max_entries = kMaxEntries) : max_entries_(max_entries) {}

  // The entry for `sql`'s shape, made on first sight; null when the text
  // has no fingerprint or the registry is full.
  QueryFingerprint* For(std::string_view sql, std::vector<std::string> tables, bool writes);

  // A copy of every entry, for reports and the coordinator's flush.
  struct Row {
    std::string fingerprint;
    std::string normalized;
    std::vector<std::string> tables;
    bool writes = false;
    uint64_t executions = 0;
    uint64_t refused = 0;
    int64_t last_seen_ms = 0;
  };
  std::vector<Row> Rows() const;
  // Shapes not kept because the registry was full.
  uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }

 private:
  const size_t max_entries_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::unique_ptr<QueryFingerprint>> entries_
      ABSL_GUARDED_BY(mutex_);
  std::atomic<uint64_t> untracked_{0};
};

}  // namespace pgshift::routing
