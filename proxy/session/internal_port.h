// What a part of the session that talks to the servers for pgshift itself
// (the mirror coordinator) needs from the session: pgshift's own exchanges
// on a link, waiting for the links' pumps, and the client's socket. The
// session implements it over its sockets; unit tests over a script.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/error_fields.h"
#include "proxy/asio.h"
#include "proxy/session/expected_reply.h"
#include "proxy/session/internal_batch.h"
#include "proxy/session/link.h"

namespace pgshift::proxy {

class InternalPort {
 public:
  using Error = std::optional<protocol::ErrorFields>;

  virtual ~InternalPort() = default;

  // Sends messages ending in one Sync (or one Query) on `link`; the reply
  // is filled in by the link's pump, so other work can overlap the round
  // trip.
  virtual awaitable<std::shared_ptr<InternalReply>> SendInternal(Link& link,
                                                                 std::string messages) = 0;
  // The reply's error, if the server raised one; `value` gets the first
  // column of its first row.
  virtual awaitable<Error> AwaitInternal(const std::shared_ptr<InternalReply>& reply,
                                         std::string* value) = 0;
  // Waits until `ready()` or the session ends.
  virtual awaitable<void> WaitFor(std::function<bool()> ready) = 0;
  // Waits for `duration` (for what no event of the session signals).
  virtual awaitable<void> Pause(std::chrono::milliseconds duration) = 0;
  // Connects `link`'s server if it is not connected (new is connected when
  // first needed, and again after it was lost).
  virtual awaitable<Error> ConnectServer(Link& link) = 0;
  // Brings `link` to the settings the client gave the other server.
  virtual awaitable<void> SyncSettings(Link& link) = 0;
  virtual awaitable<void> SendToClient(std::string_view bytes) = 0;
  virtual bool ended() const = 0;

  // SendInternal and AwaitInternal in one.
  awaitable<Error> RunInternalMessages(Link& link, std::string messages, std::string* value) {
    std::shared_ptr<InternalReply> reply = co_await SendInternal(link, std::move(messages));
    co_return co_await AwaitInternal(reply, value);
  }
  // Runs `sql` on `link`.
  awaitable<Error> RunInternal(Link& link, std::string_view sql, std::string* value = nullptr) {
    std::string batch = InternalBatch({sql});
    co_return co_await RunInternalMessages(link, std::move(batch), value);
  }
};

}  // namespace pgshift::proxy
