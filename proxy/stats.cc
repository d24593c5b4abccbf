#include "proxy/stats.h"

namespace pgshift::proxy {

void Stats::ObserveQuery(std::chrono::nanoseconds latency) {
  double seconds = std::chrono::duration<double>(latency).count();
  size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(latency.count()), std::memory_order_relaxed);
}

Stats::Latency Stats::latency() const {
  Latency l;
  for (size_t i = 0; i < buckets_.size(); ++i) l.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  l.count = count_.load(std::memory_order_relaxed);
  l.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return l;
}

}  // namespace pgshift::proxy
