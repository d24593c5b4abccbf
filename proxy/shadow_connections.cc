// The shadow runner's connections of its own: borrowed from a pool per
// side, reads written in the extended protocol (prepared once when they
// call no function, followed by DISCARD ALL when they do), and their
// results collected as text.
#include <algorithm>

#include "common/strings.h"
#include "protocol/message_type.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/messages/row_description.h"
#include "proxy/control_connection.h"
#include "proxy/log.h"
#include "proxy/message_io.h"
#include "proxy/server.h"
#include "proxy/shadow_runner.h"

namespace pgshift::proxy {

namespace {

using routing::BackendId;

// query_canceled: statement_timeout cut a read short.
constexpr std::string_view kQueryCanceled = "57014";
constexpr std::string_view kInsufficientPrivilege = "42501";
// What a prepared statement fails with once its table's columns changed.
constexpr std::string_view kStalePlan = "0A000";
constexpr std::string_view kStalePlanMessage = "cached plan must not change result type";

}  // namespace

awaitable<bool> ShadowRunner::BorrowBoth(Comparing& run, const ShadowJob& job) {
  // One co_await per statement: GCC 12 mishandles them inside || and ?:.
  bool connected = co_await Borrow(run, job.plan->server);
  if (connected) connected = co_await Borrow(run, job.plan->shadow->server);
  co_return connected;
}

awaitable<bool> ShadowRunner::Borrow(Comparing& run, BackendId side) {
  ConnectionPtr& held = run.connections[static_cast<int>(side)];
  if (held && held->stream && held->stream->is_open()) co_return true;
  std::vector<ConnectionPtr>& idle = idle_[static_cast<int>(side)];
  while (!idle.empty()) {
    held = std::move(idle.back());
    idle.pop_back();
    if (held->stream && held->stream->is_open()) co_return true;
  }
  held.reset();
  SettingsPtr settings = server_.settings();
  const routing::Config& config = *settings->config;
  const bool new_side = side == BackendId::kNew;
  if (new_side && !config.new_backend) co_return false;  // a reload removed it
  routing::BackendConfig backend = new_side ? *config.new_backend : config.old_backend;
  if (!config.proxy.shadow_user.empty()) {
    backend.user = config.proxy.shadow_user;
    backend.password = config.proxy.shadow_password;
  }
  // Every transaction on it is one REPEATABLE READ snapshot that cannot
  // write (a batch of reads up to one Sync is such a transaction), and a
  // read runs at most shadow_timeout. As startup options they are what
  // DISCARD ALL, after each comparison, returns to.
  const std::string options = StrCat(
      "-c default_transaction_isolation=repeatable\\ read -c "
      "default_transaction_read_only=on -c statement_timeout=",
      std::max<int64_t>(1, static_cast<int64_t>(config.proxy.shadow_timeout_s * 1000)));
  auto opened = co_await OpenControlConnection(config, backend, new_side ? "new" : "old",
                                               server_.backend_tls(), options);
  if (!opened.ok()) {
    LogEvent(LogLevel::kWarning, "shadow_unavailable",
             {{"backend", new_side ? "new" : "old"}, {"reason", MessageOf(opened.status())}});
    co_return false;
  }
  held = std::make_unique<Connection>();
  held->stream = std::move(*opened);
  co_return true;
}

void ShadowRunner::GiveBack(Comparing& run) {
  for (size_t side = 0; side < run.connections.size(); ++side) {
    ConnectionPtr& held = run.connections[side];
    if (held && held->stream && held->stream->is_open()) idle_[side].push_back(std::move(held));
    held.reset();
  }
}

void ShadowRunner::AppendRead(Comparing& run, BackendId side, std::string& out,
                              const std::string& sql,
                              const std::shared_ptr<const std::string>& bind, bool sync) {
  protocol::Bind params;
  if (bind) {
    auto decoded = protocol::Bind::Decode(std::string_view(*bind).substr(protocol::kHeaderSize));
    if (decoded.ok()) params = *std::move(decoded);
  }
  params.portal.clear();
  params.statement.clear();
  params.result_formats.clear();  // text, for comparing
  Connection* c = run.connections[static_cast<int>(side)].get();
  if (run.discard || c == nullptr) {
    protocol::Parse{"", sql, {}}.Encode(out);
  } else {
    // Prepared once per connection: parsing and planning each read again
    // would cost the server more than the client's own read.
    if (c->prepared_unsure || c->prepared.size() >= kMaxPrepared) {
      for (const auto& [text, name] : c->prepared) {
        protocol::Close{protocol::Target::kStatement, name}.Encode(out);
      }
      c->prepared.clear();
      c->prepared_unsure = false;
    }
    auto [at, added] = c->prepared.try_emplace(sql);
    if (added) {
      at->second = StrCat("pgshift_shadow_", ++c->statements_made);
      protocol::Parse{at->second, sql, {}}.Encode(out);
    }
    params.statement = at->second;
  }
  params.Encode(out);
  protocol::Describe{protocol::Target::kPortal, ""}.Encode(out);
  protocol::Execute{"", 0}.Encode(out);
  if (sync) protocol::Sync{}.Encode(out);
}

awaitable<bool> ShadowRunner::Send(Comparing& run, BackendId side, const std::string& out) {
  Connection* c = run.connections[static_cast<int>(side)].get();
  if (c == nullptr || !c->stream) co_return false;
  std::string batch = out;
  if (run.discard) {
    protocol::Query{"DISCARD ALL"}.Encode(batch);
    c->prepared.clear();  // DISCARD ALL deallocates them
  }
  error_code ec;
  co_await c->stream->Write(asio::buffer(batch), ec);
  if (ec) {
    c->stream.reset();
  } else if (run.discard) {
    ++c->discards_pending;
  }
  co_return !ec;
}

awaitable<std::vector<routing::ResultSet>> ShadowRunner::Collect(Comparing& run, BackendId side) {
  std::vector<routing::ResultSet> results(1);
  Connection* held = run.connections[static_cast<int>(side)].get();
  Connection empty;
  Connection& c = held != nullptr ? *held : empty;
  error_code ec;
  bool discarding = false;  // the reads answered: the DISCARD ALL's reply follows
  while (c.stream) {
    routing::ResultSet& result = results.back();
    auto message = co_await ReadWholeMessage(*c.stream, c.buffer, protocol::kBackendTypes, ec,
                                             protocol::kDefaultMaxMessageSize);
    if (ec || !message.ok()) break;
    std::string_view payload = std::string_view(*message).substr(protocol::kHeaderSize);
    if (discarding) {
      if ((*message)[0] != protocol::backend::kReadyForQuery) continue;
      --c.discards_pending;
      co_return results;
    }
    switch ((*message)[0]) {
      case protocol::backend::kRowDescription: {
        auto desc = protocol::RowDescription::Decode(payload);
        if (!desc.ok()) break;
        for (const auto& f : desc->fields) result.columns.push_back({f.name, f.type_oid});
        break;
      }
      case protocol::backend::kDataRow: {
        auto row = protocol::DataRow::Decode(payload);
        if (!row.ok()) break;
        if (run.skipped_because.empty() &&
            run.reading.Take(routing::ResultSet::RowBytes(message->size(), row->values.size()))) {
          result.rows.push_back(std::move(row->values));
        } else if (run.skipped_because.empty()) {
          run.skipped_because = "result above shadow_max_bytes";
        }
        break;
      }
      case protocol::backend::kErrorResponse: {
        auto e = protocol::ErrorResponse::Decode(payload);
        c.prepared_unsure = true;
        result.error_sqlstate = e.ok() ? std::string(e->sqlstate()) : "XX000";
        result.error_message = e.ok() ? std::string(e->message()) : "malformed error";
        if (result.error_sqlstate == kQueryCanceled && run.skipped_because.empty()) {
          run.skipped_because = "a read ran past shadow_timeout";
        } else if (result.error_sqlstate == kStalePlan && !run.discard &&
                   result.error_message == kStalePlanMessage && run.skipped_because.empty()) {
          // "cached plan must not change result type": the table changed
          // under a statement pgshift prepared; prepared afresh next time.
          run.skipped_because = StrCat("a prepared shadow read went stale: ", result.error_message);
        } else if (result.error_sqlstate == kInsufficientPrivilege && run.skipped_because.empty()) {
          // Both sides failing alike would look like agreement.
          run.skipped_because = StrCat("the shadow role may not read: ", result.error_message);
          if (!privilege_warned_) {
            privilege_warned_ = true;
            LogEvent(LogLevel::kWarning, "shadow_privilege_missing",
                     {{"backend", side == BackendId::kNew ? "new" : "old"},
                      {"reason", result.error_message}});
          }
        }
        break;  // the server skips the rest of the batch
      }
      case protocol::backend::kCommandComplete:  // this read's end: the next one's result follows
        results.emplace_back();
        break;
      case protocol::backend::kReadyForQuery:
        if (results.size() > 1 && results.back().columns.empty() && results.back().rows.empty() &&
            results.back().error_sqlstate.empty()) {
          results.pop_back();
        }
        if (c.discards_pending == 0) co_return results;
        discarding = true;
        break;
      default: break;
    }
  }
  // The connection is gone: a fresh one next time. Once the reads had all
  // answered (only the DISCARD ALL's reply was due), their results stand.
  c.stream.reset();
  if (discarding) co_return results;
  run.lost = true;
  routing::ResultSet lost;
  lost.error_sqlstate = "08006";
  lost.error_message = "pgshift's shadow connection was lost";
  co_return std::vector<routing::ResultSet>{lost};
}

awaitable<routing::ResultSet> ShadowRunner::CollectOne(Comparing& run, BackendId side) {
  std::vector<routing::ResultSet> results = co_await Collect(run, side);
  co_return std::move(results.front());
}

}  // namespace pgshift::proxy
