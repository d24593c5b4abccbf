// The last minutes of each migrating table's counters, sampled at a fixed
// interval and kept in memory (bounded), for the status page's charts:
// mirrored writes, mirror failures, and shadow reads compared, persistently
// mismatched and dropped, each per second, and the mismatch rate.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace pgshift::proxy {

class RateHistory {
 public:
  static constexpr int kIntervalSeconds = 10;
  static constexpr size_t kSamples = 91;  // 15 minutes of rates

  // Counter totals of one table at one moment.
  struct Sample {
    int64_t at = 0;  // unix seconds
    uint64_t writes = 0, mirror_failures = 0;
    uint64_t shadow_compared = 0, shadow_persistent = 0, shadow_dropped = 0;
  };

  void Record(const std::string& table, const Sample& sample);
  // {"interval_s":10,"tables":{"T":[{"at":...,"writes":1.5,...},...]}}: the
  // rate between each two samples, oldest first, and the share of the
  // comparisons between them that mismatched persistently (mismatch_rate).
  std::string Json() const;

 private:
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::deque<Sample>> samples_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace pgshift::proxy
