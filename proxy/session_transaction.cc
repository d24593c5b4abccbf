// The client's transaction across two servers, the session's part: a
// server joins it when first needed, savepoints exist on both, and the
// client's own two-phase commit never prepares half of a mirrored
// transaction.
#include "common/strings.h"
#include "protocol/messages/query.h"
#include "proxy/log.h"
#include "proxy/session.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace sqlstate = protocol::sqlstate;
}  // namespace

awaitable<bool> Session::ClientTwoPhase(Step& step) {
  Link& old = link(BackendId::kOld);
  Link& fresh = link(BackendId::kNew);
  if (step.transaction == routing::TransactionKind::kPrepare) {
    Link& other = link(routing::OtherBackend(step.target));
    co_await WaitUntil([&other] { return other.Quiet(); });
    if (!other.ready() || other.transaction_status == TransactionStatus::kIdle) co_return true;
    if (!transaction_.mirrors(other.server)) {
      // It only read there: its side ends, and the writer's is prepared.
      co_await RunInternal(other, "ROLLBACK");
      co_return true;
    }
    refusals_.Set(
        step.fail_probe,
        ErrorFields::Make(
            "ERROR", sqlstate::kFeatureNotSupported,
            StrCat("pgshift: this transaction's writes are mirrored to server ", other.name,
                   "; PREPARE TRANSACTION would prepare it on server ", link(step.target).name,
                   " alone, where COMMIT PREPARED could not "
                   "finish the mirror on ",
                   other.name, ": COMMIT it instead, or prepare it before the table is mirrored")));
    co_return false;
  }
  // COMMIT or ROLLBACK PREPARED: where the transaction was prepared (old,
  // unless only new has it). Never inside a batch the client has under way.
  if (old.in_batch() || fresh.in_batch()) co_return true;
  if (!fresh.ready() && co_await ConnectNew(false)) co_return true;
  const std::string sql =
      StrCat("SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = ", QuoteLiteral(step.gid),
             " AND database = pg_catalog.current_database()");
  std::string on_old, on_new;
  co_await RunInternal(old, sql, &on_old);
  if (on_old.empty()) co_await RunInternal(fresh, sql, &on_new);
  step.target = on_new.empty() ? BackendId::kOld : BackendId::kNew;
  co_return true;
}

awaitable<void> Session::JoinAtSavepoint(Link& other) {
  if (transaction_.reported == TransactionStatus::kIdle ||
      !settings_->router->mirrors_across_servers() ||
      other.transaction_status != TransactionStatus::kIdle) {
    co_return;
  }
  // Savepoints exist on both servers, so that a mirror that joins later
  // can roll back to them.
  if (other.server == BackendId::kNew && !other.ready()) co_await ConnectNew(false);
  if (!other.ready()) co_return;
  if (settings_sync_.Behind(other)) co_await settings_sync_.Sync(other);
  co_await RunInternal(other, "BEGIN");
  if (settings_sync_.Behind(other)) co_await settings_sync_.Sync(other);
}

awaitable<bool> Session::JoinTransaction(const Step& step, Link& target, Link& other,
                                         bool mirrored_commit) {
  // One server answers at a time, so replies reach the client in order.
  co_await WaitUntil([&other] { return other.Quiet(); });
  if (ended()) co_return false;
  if (settings_sync_.Behind(target)) co_await settings_sync_.Sync(target);
  // The client is in a transaction this server has not joined yet.
  if (transaction_.reported != TransactionStatus::kIdle &&
      target.transaction_status == TransactionStatus::kIdle && target.Quiet() &&
      !target.in_batch()) {
    std::optional<ErrorFields> failed = co_await RunInternal(target, "BEGIN");
    if (failed) {
      LogEvent(LogLevel::kWarning, "transaction_join_failed",
               {{"session", StrCat(id_)}, {"backend", target.name}, {"reason", failed->message()}});
    }
  }
  if (!step.on_other_link_first.empty() && other.transaction_status != TransactionStatus::kIdle &&
      !ended() && !mirrored_commit) {
    // The client's own text (it may hold several statements): a Query.
    std::string query;
    protocol::Query{step.on_other_link_first}.Encode(query);
    std::optional<ErrorFields> failed =
        co_await RunInternalMessages(other, std::move(query), nullptr);
    if (failed) {
      LogEvent(LogLevel::kError, "transaction_control_failed",
               {{"session", StrCat(id_)},
                {"backend", other.name},
                {"statement", step.on_other_link_first},
                {"reason", failed->message()}});
    }
  }
  if (settings_sync_.Behind(target)) co_await settings_sync_.Sync(target);
  co_return !ended();
}

}  // namespace pgshift::proxy
