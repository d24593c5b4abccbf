// Process-wide counters for SHOW STATS and /metrics, updated from every
// worker with relaxed atomics (they are read for display, never to decide).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace pgshift::proxy {

class Stats {
 public:
  // Upper bounds (seconds) of the query latency histogram's buckets.
  static constexpr std::array<double, 14> kLatencyBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};

  struct Latency {
    std::array<uint64_t, kLatencyBuckets.size() + 1> buckets{};  // last: above every bound
    uint64_t count = 0;
    double sum_seconds = 0;
  };

  // One query cycle through pgshift: from the client's Query, Sync or
  // FunctionCall to the ReadyForQuery that answers it.
  void ObserveQuery(std::chrono::nanoseconds latency);
  Latency latency() const;

  std::atomic<uint64_t> sessions_total{0};
  std::atomic<uint64_t> login_failures{0};
  std::atomic<uint64_t> protocol_violations{0};
  std::atomic<uint64_t> backend_failures{0};

 private:
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace pgshift::proxy
