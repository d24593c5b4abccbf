// Writes to a migrating table that no statement through pgshift shows (a
// function called from a SELECT, a trigger pgshift was told to ignore,
// another client writing the old side directly), counted by what can be
// known. PostgreSQL's statistics count every row inserted, updated or
// deleted in a table (pg_stat_all_tables.n_tup_*); pgshift counts the rows
// its mirrored writes returned. On the side whose writes are authoritative
// the two grow together, unless something else writes the table: the
// difference is what no statement showed, and so was never mirrored.
//
// PostgreSQL publishes a session's counts only after its transaction ends,
// at most once a second, and an idle session's up to 10 s later. So a
// count begins from a baseline taken kStatisticsDelay after the table
// entered its phase (writes from before are all published by then), paired
// with pgshift's own count from kStatisticsDelay before it: the published
// figure can lag pgshift's, never lead it, so the difference never blames
// pgshift's own writes (it can miss hidden ones of those seconds instead).
// At start the baseline is immediate: pgshift had written nothing yet.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "proxy/asio.h"
#include "routing/config.h"
#include "routing/router.h"

namespace pgshift::proxy {

class WriteAudit {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kStatisticsDelay{12};

  // One table in a mirrored phase, sampled.
  struct Reading {
    std::string table;          // as configured
    std::string relation;       // where its writes are authoritative, e.g. "old:public.t"
    uint64_t server_rows = 0;   // rows inserted, updated or deleted there, as published
    uint64_t proxied_rows = 0;  // rows pgshift's mirrored writes returned (TableCounters)
  };

  // A round of samples. Tables in `mirrored` without a reading (their
  // server did not answer) keep their count; tables not in it are dropped.
  void Record(Clock::time_point now, const std::vector<Reading>& readings,
              const std::vector<std::string>& mirrored);

  // Rows changed beyond pgshift's own since the table's count began, as of
  // the last round; nullopt while it has not begun (or is not kept).
  std::optional<uint64_t> Unexplained(const std::string& table) const;

  // A round's read of `server` failed for `reason` (empty: it succeeded);
  // true when that is news worth a log line.
  bool Failed(routing::BackendId server, const std::string& reason);

 private:
  struct Sample {
    Clock::time_point at;
    uint64_t proxied = 0;
  };
  struct Count {
    std::string relation;
    Clock::time_point since;
    std::deque<Sample> history;  // pgshift's count per round, until the baseline
    bool begun = false;
    uint64_t server_base = 0;
    uint64_t proxied_base = 0;
    uint64_t unexplained = 0;
  };
  void Begin(Count& count, const Reading& reading, uint64_t proxied_base);

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, Count> counts_ ABSL_GUARDED_BY(mutex_);
  bool first_round_ ABSL_GUARDED_BY(mutex_) = true;
  std::string last_failure_[2] ABSL_GUARDED_BY(mutex_);
};

// Reads the published row counts of every table in a mirrored phase on its
// authoritative side and records a round. Servers without a dbname and
// user for pgshift's own connection, or that do not answer, are skipped.
awaitable<void> AuditWrites(const routing::Config& config, asio::ssl::context& tls,
                            routing::TableCounterRegistry& counters, WriteAudit& audit);

}  // namespace pgshift::proxy
