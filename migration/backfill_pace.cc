#include "migration/backfill_pace.h"

#include <algorithm>
#include <thread>

#include "common/strings.h"
#include "migration/table_pair.h"

namespace pgshift::migration {

// The batch's rows stay locked while it runs: its size follows the rate
// so that a batch takes about --batch-seconds, amortising each batch's
// round trips, checkpoint and wait for older snapshots.
void BatchPace::Adapt(Clock::duration took) {
  if (options_.batch_seconds <= 0) return;
  // Under --rate, no more rows than that rate allows in --batch-seconds:
  // fast batches and long sleeps would lock rows in bursts.
  const int64_t most =
      options_.rate > 0 ? std::clamp(static_cast<int64_t>(options_.rate * options_.batch_seconds),
                                     options_.batch, kMaxBatch)
                        : kMaxBatch;
  const double seconds = std::chrono::duration<double>(took).count();
  if (seconds < options_.batch_seconds / 2 && batch_ < most) {
    batch_ = std::min(most, batch_ * 2);
  } else if (seconds > options_.batch_seconds * 2 && batch_ > options_.batch) {
    batch_ = std::max(options_.batch, batch_ / 2);
  }
}

absl::Status BatchPace::WaitWhileUnderPressure() {
  bool said = false;
  while (true) {
    auto r = old_db_.Exec(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()");
    if (!r.ok()) return r.status();
    int64_t waiting = 0;
    ParseInt(*r->rows[0][0], waiting);
    if (waiting <= options_.max_lock_waits) return absl::OkStatus();
    batch_ = options_.batch;  // sessions wait: lock fewer rows at a time
    if (!said) {
      std::fprintf(out_,
                   "pgshift backfill: pausing: %lld sessions wait on locks in old "
                   "(more than --max-lock-waits %lld)\n",
                   static_cast<long long>(waiting),
                   static_cast<long long>(options_.max_lock_waits));
      std::fflush(out_);
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

void BatchPace::Throttle(int64_t rows, Clock::time_point started) {
  if (options_.rate <= 0) return;
  auto due = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                           static_cast<double>(rows) / options_.rate));
  if (due > Clock::now()) std::this_thread::sleep_until(due);
}

void BatchPace::Report(const Checkpoint& c, int64_t copied, double rate, int64_t estimate,
                       const WorkRange& range) {
  if (!options_.progress_bar) {
    std::fprintf(out_,
                 "event=backfill_batch table=%s range=%lld/%lld rows=%lld copied=%lld last_key=%s "
                 "rate=%.0f next_batch=%lld\n",
                 table_.c_str(), static_cast<long long>(range.number + 1),
                 static_cast<long long>(range.count), static_cast<long long>(c.rows),
                 static_cast<long long>(copied), KeyText(c.last_key).c_str(), rate,
                 static_cast<long long>(batch_));
    std::fflush(out_);
    return;
  }
  double share =
      estimate > 0 ? std::min(1.0, static_cast<double>(c.rows) / static_cast<double>(estimate)) : 0;
  int filled = static_cast<int>(share * 30);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(30, ' ');
  double eta = rate > 0 && estimate > c.rows ? static_cast<double>(estimate - c.rows) / rate : 0;
  std::fprintf(out_, "\r%s [%s] %3.0f%% %lld rows, %.0f rows/s, ETA %.0f s   ", table_.c_str(),
               bar.c_str(), share * 100, static_cast<long long>(c.rows), rate, eta);
  std::fflush(out_);
}

}  // namespace pgshift::migration
