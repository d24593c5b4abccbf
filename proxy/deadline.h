// A time limit on a connection's start (a login to a backend, a client's
// login to pgshift).
#pragma once

#include <chrono>
#include <memory>

#include "proxy/asio.h"
#include "proxy/stream.h"

namespace pgshift::proxy {

// Closes the watched socket if the login has not finished by the deadline,
// which makes whatever operation is pending fail. The state is shared with
// the timer's handler, which may still run after the Deadline is gone.
class Deadline {
 public:
  Deadline(tcp::socket& socket, double seconds)
      : timer_(socket.get_executor()), state_(std::make_shared<State>()) {
    state_->socket = &socket;
    Start(seconds);
  }
  Deadline(Stream& stream, double seconds)
      : timer_(stream.socket().get_executor()), state_(std::make_shared<State>()) {
    state_->stream = &stream;
    Start(seconds);
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() {
    state_->disarmed = true;
    timer_.cancel();
  }
  // The connection moved into a Stream (which may later move it into TLS).
  void Watch(Stream& stream) { state_->stream = &stream; }
  bool expired() const { return state_->expired; }

 private:
  void Start(double seconds) {
    timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    timer_.async_wait([state = state_](error_code ec) {
      if (ec || state->disarmed) return;
      state->expired = true;
      if (state->stream != nullptr) {
        state->stream->Close();
      } else {
        error_code ignored;
        state->socket->close(ignored);
      }
    });
  }

  struct State {
    tcp::socket* socket = nullptr;
    Stream* stream = nullptr;
    bool expired = false;
    bool disarmed = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

}  // namespace pgshift::proxy
