// An InternalPort for unit tests, no sockets: each batch runs at once, as a
// server would run it, and what ran on each server is kept in order.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/strings.h"
#include "protocol/frame.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "proxy/session/internal_port.h"
#include "proxy/two_phase.h"

namespace pgshift::proxy {

// Runs a coroutine on an event loop of its own until it ends.
template <typename T>
T RunToEnd(awaitable<T> task) {
  asio::io_context io;
  std::optional<T> out;
  asio::co_spawn(
      io, [&]() -> awaitable<void> { out = co_await std::move(task); },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  io.run();
  return *out;
}

inline void RunToEnd(awaitable<void> task) {
  RunToEnd([&]() -> awaitable<bool> {
    co_await std::move(task);
    co_return true;
  }());
}

// What a scripted `SELECT pg_catalog.txid_current()` answers.
inline constexpr const char* kXid = "4711";

// Runs each batch at once, as a server would: statements in order, skipped
// after an error until the Sync, and each link's transaction status as the
// batch leaves it.
class ScriptedPort : public InternalPort {
 public:
  using ErrorFields = protocol::ErrorFields;
  using TransactionStatus = protocol::TransactionStatus;
  using BackendId = routing::BackendId;

  // The next statement on `server` that starts with `prefix` fails.
  void FailNext(BackendId server, std::string prefix, std::string_view sqlstate = "23514") {
    failures_.push_back(
        {server, std::move(prefix), ErrorFields::Make("ERROR", sqlstate, "scripted failure")});
  }

  // A batch holding a statement that starts with `prefix` runs at once but
  // is answered only at FinishDeferred (the server still busy with it).
  void Defer(std::string prefix) { defer_prefix_ = std::move(prefix); }
  void FinishDeferred() {
    for (const std::shared_ptr<InternalReply>& reply : deferred_) reply->done = true;
    deferred_.clear();
    defer_prefix_.clear();
  }

  awaitable<std::shared_ptr<InternalReply>> SendInternal(Link& link,
                                                         std::string messages) override {
    auto reply = std::make_shared<InternalReply>();
    reply->done = true;
    const size_t ran_before = ran[static_cast<int>(link.server)].size();
    for (std::string_view rest = messages; !rest.empty();) {
      auto size = protocol::CompleteMessageSize(rest, protocol::kFrontendTypes,
                                                protocol::kDefaultMaxMessageSize);
      if (!size.ok() || *size == 0) {
        ADD_FAILURE() << "a batch that ends mid-message";
        break;
      }
      const char type = rest[0];
      std::string_view payload = rest.substr(protocol::kHeaderSize, *size - protocol::kHeaderSize);
      rest.remove_prefix(*size);
      if (type == protocol::Query::kType) {
        auto query = protocol::Query::Decode(payload);
        Execute(link, query->sql, *reply);
      } else if (type == protocol::Parse::kType) {
        auto parse = protocol::Parse::Decode(payload);
        parsed_[static_cast<int>(link.server)][parse->statement] = parse->sql;
      } else if (type == protocol::Bind::kType && !reply->error) {
        auto bind = protocol::Bind::Decode(payload);
        Execute(link, parsed_[static_cast<int>(link.server)][bind->statement], *reply);
      }
    }
    const std::vector<std::string>& on_server = ran[static_cast<int>(link.server)];
    if (!defer_prefix_.empty() &&
        std::any_of(on_server.begin() + ran_before, on_server.end(),
                    [&](const std::string& sql) { return sql.starts_with(defer_prefix_); })) {
      reply->done = false;
      deferred_.push_back(reply);
    }
    co_return reply;
  }
  awaitable<Error> AwaitInternal(const std::shared_ptr<InternalReply>& reply,
                                 std::string* value) override {
    EXPECT_TRUE(reply->done) << "the coordinator would wait for a deferred reply";
    if (value != nullptr && reply->value) *value = *reply->value;
    co_return reply->error;
  }
  awaitable<void> WaitFor(std::function<bool()> ready) override {
    EXPECT_TRUE(ready()) << "the coordinator would wait for good";
    co_return;
  }
  awaitable<void> Pause(std::chrono::milliseconds) override {
    ++pauses;
    if (on_pause) on_pause();
    co_return;
  }
  awaitable<Error> ConnectServer(Link&) override { co_return std::nullopt; }
  awaitable<void> SyncSettings(Link&) override { co_return; }
  awaitable<void> SendToClient(std::string_view bytes) override {
    client.append(bytes);
    co_return;
  }
  bool ended() const override { return false; }

  std::array<std::vector<std::string>, 2> ran;  // by routing::BackendId
  std::string client;                           // what the client was sent
  int pauses = 0;
  std::function<void()> on_pause;  // called at each Pause
  // The last PREPARE TRANSACTION ran while recovery would leave it alone.
  std::optional<bool> prepared_while_registered;
  // Called with each statement as it runs.
  std::function<void(BackendId, const std::string&)> on_run;

 private:
  struct Failure {
    BackendId server;
    std::string prefix;
    ErrorFields error;
  };

  void Execute(Link& link, const std::string& sql, InternalReply& reply) {
    ran[static_cast<int>(link.server)].push_back(sql);
    if (on_run) on_run(link.server, sql);
    if (absl::StartsWith(sql, "PREPARE TRANSACTION")) {
      const std::string gid = sql.substr(sql.find('\'') + 1, sql.rfind('\'') - sql.find('\'') - 1);
      prepared_while_registered = SettlingMirrors::Get().Contains(gid);
    }
    const bool ends =
        sql == "COMMIT" || sql == "ROLLBACK" || absl::StartsWith(sql, "PREPARE TRANSACTION") ||
        absl::StartsWith(sql, "COMMIT PREPARED") || absl::StartsWith(sql, "ROLLBACK PREPARED");
    if (link.transaction_status == TransactionStatus::kFailed && !ends &&
        !absl::StartsWith(sql, "ROLLBACK TO")) {
      reply.error = ErrorFields::Make("ERROR", "25P02", "current transaction is aborted");
      return;
    }
    for (auto f = failures_.begin(); f != failures_.end(); ++f) {
      // A Query of several statements fails when any of them does.
      std::vector<std::string_view> parts = Split(sql, ';');
      const bool matches = std::any_of(parts.begin(), parts.end(), [&](std::string_view part) {
        while (part.starts_with('\n')) part.remove_prefix(1);
        return part.starts_with(f->prefix);
      });
      if (f->server != link.server || !matches) continue;
      reply.error = f->error;
      failures_.erase(f);
      if (link.transaction_status != TransactionStatus::kIdle) {
        link.transaction_status = TransactionStatus::kFailed;
      }
      return;
    }
    if (sql == "BEGIN" || absl::StartsWith(sql, "ROLLBACK TO")) {
      link.transaction_status = TransactionStatus::kInBlock;
    } else if (ends) {
      link.transaction_status = TransactionStatus::kIdle;
    } else if (absl::StartsWith(sql, "SELECT pg_catalog.txid_current()")) {
      reply.value = kXid;
    }
  }

  std::vector<Failure> failures_;
  std::string defer_prefix_;
  std::vector<std::shared_ptr<InternalReply>> deferred_;
  std::array<std::map<std::string, std::string>, 2> parsed_;
};

}  // namespace pgshift::proxy
