// The one way a session's coroutines wait for each other (the client pump
// for a link to answer, the mirror for its reply cycle, the end for both
// pumps): a broadcast on the session's executor. Whoever changes what
// someone may be waiting for calls Notify; every waiter then checks its own
// condition again, so Notify never needs to know who waits for what.
#pragma once

#include "proxy/asio.h"

namespace pgshift::proxy {

class Wakeup {
 public:
  explicit Wakeup(asio::any_io_executor executor)
      : timer_(executor, asio::steady_timer::time_point::max()) {}

  // Returns once `ready()` holds. The timer never expires: waits end only
  // by Notify's cancel, which leaves the expiry as it is (setting it again
  // would cancel the other waiters and have them wake each other in turn).
  template <typename Ready>
  awaitable<void> Until(Ready ready) {
    while (!ready()) {
      error_code cancelled;
      co_await timer_.async_wait(WithError(cancelled));
    }
  }
  void Notify() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

}  // namespace pgshift::proxy
