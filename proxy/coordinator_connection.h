// pgshift's connection to the coordinator (the old database, or another
// route to it), shared by the coordinator's loop (coordinator.cc) and the
// proposer of a flip (flip.cc). Internal to proxy/.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "proxy/backend_query.h"
#include "proxy/coordinator.h"
#include "proxy/packet_buffer.h"
#include "proxy/stream.h"
#include "routing/config.h"

namespace pgshift::proxy {

struct CoordinatorConnection {
  explicit CoordinatorConnection(std::unique_ptr<Stream> opened) : stream(std::move(opened)) {}
  std::unique_ptr<Stream> stream;
  PacketBuffer buffer;
  // NotificationResponses that came with the answers (it LISTENs).
  int notifications = 0;
  awaitable<absl::StatusOr<QueryResult>> Query(std::string_view sql) {
    co_return co_await RunQuery(*stream, buffer, sql, &notifications);
  }
  // Runs each of `statements`; the first failure.
  awaitable<absl::Status> Run(const std::vector<std::string>& statements) {
    for (const std::string& sql : statements) {
      auto done = co_await Query(sql);
      if (!done.ok()) co_return done.status();
    }
    co_return absl::OkStatus();
  }
};

// Opens a connection to the coordinator with its tables in place (the
// first instances may create them at once: a collision is tried again),
// given up on within half the lease.
awaitable<absl::StatusOr<std::unique_ptr<Stream>>> OpenCoordinator(const routing::Config& config,
                                                                   asio::ssl::context& tls);

// The fleet's phases; with `seed`, the tables of `file` the coordinator
// does not know yet are added first, in the file's phases (the first
// instance to know a table seeds it).
absl::StatusOr<SharedPhases> ReadPhases(const routing::Config& file, asio::ssl::context& tls,
                                        bool seed);

// The channel every instance LISTENs on: a proposal, an acknowledgement and
// a flip's end NOTIFY it.
std::string ListenSql();
std::string NotifySql();

// An SQL condition on a pgshift_phases row: its flip has been pending for
// long past cutover_timeout (its proposer died, or could not end it), and
// any instance may clear it.
std::string StaleFlipSql(const routing::CoordinationSettings& settings);

inline std::string Text(const std::optional<std::string>& value) { return value.value_or(""); }

inline std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

awaitable<void> Sleep(std::chrono::milliseconds duration);

}  // namespace pgshift::proxy
