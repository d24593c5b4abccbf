// How fast backfill goes: the size of its next batch (following the rate
// so that a batch takes about --batch-seconds, under --rate's cap), its
// pause while sessions wait on locks in old, the --rate throttle, and the
// progress it reports after each batch.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "migration/backfill.h"
#include "migration/pg_client.h"
#include "migration/range_ledger.h"
#include "migration/state_store.h"

namespace pgshift::migration {

class BatchPace {
 public:
  using Clock = std::chrono::steady_clock;
  // The most rows one batch locks, however fast batches go.
  static constexpr int64_t kMaxBatch = 1000000;

  BatchPace(const BackfillOptions& options, std::FILE* out, PgClient& old_db, std::string table)
      : options_(options), out_(out), old_db_(old_db), table_(std::move(table)) {}

  int64_t batch() const { return batch_; }  // rows in the next batch
  void Adapt(Clock::duration took);
  absl::Status WaitWhileUnderPressure();
  // Sleeps until `rows` since `started` keep to --rate.
  void Throttle(int64_t rows, Clock::time_point started);
  void Report(const Checkpoint& c, int64_t copied, double rate, int64_t estimate,
              const WorkRange& range);

 private:
  const BackfillOptions& options_;
  std::FILE* out_;
  PgClient& old_db_;
  const std::string table_;
  int64_t batch_ = options_.batch;
};

}  // namespace pgshift::migration
