// pgshift's own connections to a backend, outside any client session: for
// reading the new tables' catalogs and keeping the migration state in
// pgshift_state, at start and on reload. They log in with the backend's
// configured dbname and user, which they need.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "proxy/stream.h"
#include "routing/config.h"

namespace pgshift::proxy {

// FailedPrecondition when the backend has no dbname or user configured,
// Unavailable when it cannot be reached or refuses the login. `options`:
// the startup packet's (command-line options for the server, such as
// "-c name=value"), which stay the session's defaults through DISCARD ALL.
awaitable<absl::StatusOr<std::unique_ptr<Stream>>> OpenControlConnection(
    const routing::Config& config, const routing::BackendConfig& backend, std::string_view name,
    asio::ssl::context& tls, std::string_view options = {});

// Runs `work` (a coroutine returning T) to completion on a private event
// loop in the calling thread: these exchanges are rare and short, and the
// caller (start-up, a reload) waits for their answer anyway.
template <typename T, typename Work>
T RunToCompletion(Work work) {
  asio::io_context context;
  T result{};
  asio::co_spawn(
      context, [&]() -> awaitable<void> { result = co_await work(); }, asio::detached);
  context.run();
  return result;
}

}  // namespace pgshift::proxy
