// pgshift's own exchanges on a session's links (joining a transaction,
// finishing one on the other server, a mirror's rows), and bringing new to
// the settings the client gave old. Their replies never reach the client:
// each is an ExpectedReply with an InternalReply, filled in by the link's
// pump.
#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "protocol/messages/query.h"
#include "proxy/client_login.h"
#include "proxy/log.h"
#include "proxy/session.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace sqlstate = protocol::sqlstate;
}  // namespace

awaitable<std::shared_ptr<InternalReply>> Session::SendInternal(Link& l, std::string message) {
  auto reply = std::make_shared<InternalReply>();
  if (!l.ready()) {
    reply->done = true;
    reply->error = Fatal(sqlstate::kConnectionFailure,
                         StrCat("pgshift: lost the connection to backend ", l.name));
    co_return reply;
  }
  l.replies.emplace_back().internal = reply;
  error_code ec;
  co_await l.stream->Write(asio::buffer(message), ec);
  if (ec && !ended() && !l.broken()) {
    End(Fatal(sqlstate::kConnectionFailure,
              StrCat("pgshift: lost the connection to backend ", l.name, ": ", ec.message())));
  }
  co_return reply;
}

awaitable<InternalPort::Error> Session::AwaitInternal(const std::shared_ptr<InternalReply>& reply,
                                                      std::string* value) {
  co_await WaitUntil([&reply] { return reply->done; });
  if (!reply->done) co_return Fatal(sqlstate::kConnectionFailure, "session ended");
  if (value != nullptr && reply->value) *value = *reply->value;
  co_return reply->error;
}

awaitable<InternalPort::Error> Session::ConnectServer(Link& l) {
  if (l.server == BackendId::kNew && !l.ready()) co_return co_await ConnectNew(false);
  co_return std::nullopt;
}

bool Session::SettingsBehind(const Link& l) const {
  if (l.server != BackendId::kNew || !l.ready() || l.in_batch || ended()) return false;
  return l.settings_version != client_settings_.version() ||
         l.transaction_settings < client_settings_.TransactionStatements().size();
}

awaitable<void> Session::SyncSettings(Link& l) {
  if (!SettingsBehind(l)) co_return;
  const std::vector<std::string>& changes = client_settings_.TransactionStatements();
  // Its transaction status must be known.
  co_await WaitUntil([&l] { return l.forward_pending == 0 && !l.HasInternal(); });
  if (ended() || l.broken()) co_return;
  if (l.transaction_status == TransactionStatus::kIdle) {
    if (l.settings_version == client_settings_.version()) co_return;
    co_await RunSettings(l, client_settings_.SessionStatements(), false);
    l.settings_version = client_settings_.version();
  } else if (l.transaction_settings < changes.size()) {
    std::vector<std::string> rest(changes.begin() + static_cast<ptrdiff_t>(l.transaction_settings),
                                  changes.end());
    l.transaction_settings = changes.size();
    co_await RunSettings(l, rest, true);
  }
}

awaitable<void> Session::RunSettings(Link& l, const std::vector<std::string>& statements,
                                     bool in_transaction) {
  // Outside a transaction, one Query does them all unless one fails (the
  // Query then undoes them all): then each runs on its own, so that only
  // the failing one is missing. Inside one, a failure aborts it, as the
  // same failure on old would have.
  if (!in_transaction && statements.size() > 1) {
    std::string query;
    protocol::Query{absl::StrJoin(statements, ";\n")}.Encode(query);
    std::optional<ErrorFields> failed = co_await RunInternalMessages(l, std::move(query), nullptr);
    if (!failed) co_return;
  }
  for (const std::string& sql : statements) {
    std::string query;
    protocol::Query{sql}.Encode(query);
    std::optional<ErrorFields> failed = co_await RunInternalMessages(l, std::move(query), nullptr);
    if (failed) {
      LogEvent(LogLevel::kWarning, "setting_not_applied",
               {{"session", StrCat(id_)},
                {"backend", l.name},
                {"statement", sql},
                {"reason", failed->message()}});
    }
  }
}

}  // namespace pgshift::proxy
