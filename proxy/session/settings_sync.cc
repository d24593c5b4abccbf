#include "proxy/session/settings_sync.h"

#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "protocol/messages/query.h"
#include "proxy/log.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
}  // namespace

bool SettingsSync::Behind(const Link& l) const {
  if (l.server != BackendId::kNew || !l.ready() || l.in_batch() || port_.ended()) return false;
  return l.settings_version != client_.version() ||
         l.transaction_settings < client_.TransactionStatements().size();
}

awaitable<void> SettingsSync::Sync(Link& l) {
  if (!Behind(l)) co_return;
  const std::vector<std::string>& changes = client_.TransactionStatements();
  co_await port_.WaitFor([&l] { return l.forward_pending == 0 && !l.HasInternal(); });
  if (port_.ended() || l.broken()) co_return;
  if (l.transaction_status == TransactionStatus::kIdle) {
    if (l.settings_version == client_.version()) co_return;
    co_await Run(l, client_.SessionStatements(), false);
    l.settings_version = client_.version();
  } else if (l.transaction_settings < changes.size()) {
    std::vector<std::string> rest(changes.begin() + static_cast<ptrdiff_t>(l.transaction_settings),
                                  changes.end());
    l.transaction_settings = changes.size();
    co_await Run(l, rest, true);
  }
}

awaitable<void> SettingsSync::Run(Link& l, const std::vector<std::string>& statements,
                                  bool in_transaction) {
  // Outside a transaction, one Query does them all unless one fails (the
  // Query then undoes them all): then each runs on its own, so that only
  // the failing one is missing. Inside one, a failure aborts it, as the
  // same failure on old would have.
  if (!in_transaction && statements.size() > 1) {
    std::string query;
    protocol::Query{absl::StrJoin(statements, ";\n")}.Encode(query);
    std::optional<ErrorFields> failed =
        co_await port_.RunInternalMessages(l, std::move(query), nullptr);
    if (!failed) co_return;
  }
  for (const std::string& sql : statements) {
    std::string query;
    protocol::Query{sql}.Encode(query);
    std::optional<ErrorFields> failed =
        co_await port_.RunInternalMessages(l, std::move(query), nullptr);
    if (failed) {
      LogEvent(LogLevel::kWarning, "setting_not_applied",
               {{"session", StrCat(session_)},
                {"backend", l.name},
                {"statement", sql},
                {"reason", failed->message()}});
    }
  }
}

}  // namespace pgshift::proxy
