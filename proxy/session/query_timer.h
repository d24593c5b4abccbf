// Times each reply cycle the client asked for, from its send to its
// ReadyForQuery, for the latency histogram. Cycles are answered in the
// order they were sent, so the oldest send time pairs with the next answer.
// When more are in flight than fit, the rest are only counted until the
// backlog drains, so that an answer never pairs with the wrong send.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>

namespace pgshift::proxy {

class QueryTimer {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kTimed = 32;

  void Sent(Clock::time_point now) {
    if (untimed_ > 0 || timed_ == kTimed) {
      ++untimed_;
      return;
    }
    sent_at_[(head_ + timed_++) % kTimed] = now;
  }

  // The oldest unanswered cycle is answered: how long it took, when it was
  // timed.
  std::optional<Clock::duration> Answered(Clock::time_point now) {
    if (timed_ > 0) {
      Clock::duration took = now - sent_at_[head_];
      head_ = (head_ + 1) % kTimed;
      --timed_;
      return took;
    }
    if (untimed_ > 0) --untimed_;
    return std::nullopt;
  }

  // Sent and not yet answered.
  uint32_t pending() const { return timed_ + untimed_; }

 private:
  std::array<Clock::time_point, kTimed> sent_at_{};
  uint32_t head_ = 0;
  uint32_t timed_ = 0;
  uint32_t untimed_ = 0;
};

}  // namespace pgshift::proxy
