// The mirror's apply on the other server (one batch of pgshift's own
// statements), the divergence log, and a pipelined apply's outcome,
// collected before the steps that depend on it.
#include "common/strings.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/parse.h"
#include "proxy/log.h"
#include "proxy/session/mirror_coordinator.h"
#include "proxy/session/mirror_sql.h"
#include "routing/state_schema.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
using routing::TransactionKind;
namespace sqlstate = protocol::sqlstate;
using namespace mirror_sql;  // NOLINT: pgshift's statements around a mirror

}  // namespace

awaitable<bool> MirrorCoordinator::Collect(Step& step) {
  if (!pending_ && !failed_) co_return true;
  const BackendId mirror_server = pending_ ? pending_->mirror : failed_->mirror;
  Link& auth = link(routing::OtherBackend(mirror_server));
  switch (step.transaction) {
    case TransactionKind::kRollback:
      co_await CollectApply(/*undone=*/true);
      failed_.reset();
      co_return true;
    case TransactionKind::kCommit:
    case TransactionKind::kPrepare:
      // Always collected, in a batch too: what follows reads the mirror's
      // state. BeforeCommit fails a COMMIT sent to the authoritative
      // side; one sent to the mirror's server (a statement prepared under
      // other phases) fails here, and so does PREPARE TRANSACTION.
      co_await CollectApply(/*undone=*/false);
      if (!failed_ ||
          (step.transaction == TransactionKind::kCommit && step.target != mirror_server)) {
        co_return true;
      }
      break;
    case TransactionKind::kNone:
      // Reads and writes on the authoritative side go on (a mirrored write
      // collects once it has answered: MirrorWrite); a step to the
      // mirror's server runs in the transaction the apply left there.
      if (step.target != mirror_server) co_return true;
      [[fallthrough]];
    default:
      // Never inside the client's open extended batch, where pgshift's own
      // statements would land among its messages: a later step collects.
      if (!auth.in_batch()) co_await CollectApply(/*undone=*/false);
      break;
  }
  if (!failed_) co_return true;
  if (step.fail_probe != 0) {
    // Transaction control fails in its stand-in's words (ROLLBACK TO too:
    // only ROLLBACK ends a transaction whose mirror failed).
    c_.refusals.Set(step.fail_probe, EarlierApplyFailed("the transaction cannot commit"));
    co_return false;
  }
  // A step to the mirror's server fails there (its transaction failed);
  // so that nothing commits, old's transaction fails too.
  if (!auth.in_batch()) co_await c_.port.RunInternal(auth, kAbortTransaction);
  co_return true;
}

awaitable<void> MirrorCoordinator::CollectApply(bool undone) {
  if (!pending_) co_return;
  PendingApply p = std::move(*pending_);
  pending_.reset();
  Link& mirror = link(p.mirror);
  Link& auth = link(routing::OtherBackend(p.mirror));
  std::optional<ErrorFields> failed = co_await c_.port.AwaitInternal(p.reply, nullptr);
  if (p.xid) co_await c_.port.AwaitInternal(p.xid, &authoritative_xid_);
  if (!failed) co_return;
  for (const std::string& key : p.parsed_here) mirror.statements.erase(key);
  NoteFailure(p.rows, mirror, *failed);
  // Nothing of it is on the mirror: its keys were the last kept.
  for (size_t i = 0; i < p.rows.keys.size() && !keys_.empty(); ++i) {
    keys_bytes_ -= std::min(keys_bytes_, KeyBytes(keys_.back().first, keys_.back().second));
    keys_.pop_back();
  }
  if (undone) co_return;  // (a ROLLBACK undoes the write on both sides)
  std::string what = StrCat("to ", Tables(p.rows.tables), " on server ", mirror.name);
  if (!p.rows.fails_client) {
    // Undone on the mirror alone; the write stands with its keys logged.
    co_await UndoToSavepoint(mirror);
    std::optional<ErrorFields> unlogged =
        co_await LogDivergence(auth, p.rows.keys, failed->message());
    if (!unlogged) co_return;
    what = StrCat(what, " (its keys could not be logged: ", unlogged->message(), ")");
  }
  failed_ = FailedApply{p.mirror, std::move(what), std::move(*failed)};
}

ErrorFields MirrorCoordinator::EarlierApplyFailed(std::string_view consequence) const {
  return ErrorFields::Make(
      "ERROR", failed_->cause.sqlstate(),
      StrCat("pgshift: the mirror of an earlier write in this transaction ", failed_->what,
             " failed, so ", consequence, ": ", failed_->cause.message()));
}

awaitable<void> MirrorCoordinator::FailAfterEarlierApply(Link& auth, MirrorBatch& batch) {
  co_await c_.port.RunInternal(auth, kAbortTransaction);
  co_await FailClient(batch,
                      EarlierApplyFailed("this write was not made and the transaction cannot "
                                         "commit"),
                      TransactionStatus::kFailed);
}

awaitable<void> MirrorCoordinator::UndoToSavepoint(Link& mirror) {
  if (!mirror.ready() || mirror.transaction_status != TransactionStatus::kFailed) co_return;
  std::string undo = InternalBatch({kRollbackToSavepoint, kReleaseSavepoint});
  co_await c_.port.RunInternalMessages(mirror, std::move(undo), nullptr);
}

void MirrorCoordinator::NoteFailure(const MirroredRows& rows, const Link& mirror,
                                    const ErrorFields& failed) {
  for (const std::string& table : rows.tables) {
    if (c_.settings == nullptr || !c_.settings->router) break;  // (unit tests have no router)
    c_.settings->router->counters().For(table).mirror_failures.fetch_add(1,
                                                                         std::memory_order_relaxed);
  }
  LogEvent(LogLevel::kError, "mirror_failed",
           {{"session", StrCat(c_.session)},
            {"tables", Tables(rows.tables)},
            {"backend", mirror.name},
            {"keys", StrCat(rows.keys.size())},
            {"policy", rows.fails_client ? "fail" : "log"},
            {"reason", failed.message()}});
}

// One round trip: the mirror's BEGIN when it joins, each write's rows, and
// the PREPARE or COMMIT that ends pgshift's own transaction; an error skips
// the rest, as in any batch.
//
// The statements are prepared once per connection (a PREPARE TRANSACTION,
// whose name changes, each time), under pgshift's names (AppendInternal).
awaitable<std::shared_ptr<InternalReply>> MirrorCoordinator::SendApply(
    Link& mirror, MirrorBatch& batch, const ApplyOptions& options,
    std::vector<std::string>& parsed_here) {
  std::string messages;
  auto add = [&](std::string_view sql, std::optional<std::string> param, bool reuse = true) {
    if (!reuse) return AppendInternal(messages, sql, std::move(param));
    std::string key = StrCat(sql, std::string_view("\0internal", 9));
    auto it = mirror.statements.find(key);
    if (it == mirror.statements.end()) {
      std::string name = mirror.NameStatement();
      protocol::Parse{name, std::string(sql), {}}.Encode(messages);
      it = mirror.statements.emplace(key, Link::ServerStatement{name, true, 0}).first;
      parsed_here.push_back(std::move(key));
    }
    it->second.last_used = ++mirror.statement_uses;
    AppendInternal(messages, sql, std::move(param), &it->second.name);
  };
  if (options.begin) {
    add("BEGIN", std::nullopt);
    // The setting changes the client made in its transaction so far.
    const std::vector<std::string>& changes = c_.client_settings.TransactionStatements();
    if (mirror.server == BackendId::kNew) {
      for (const std::string& sql : changes) add(sql, std::nullopt, false);
      mirror.transaction_settings = changes.size();
    }
  }
  if (options.savepoint) add(kSavepoint, std::nullopt);
  // A mirror never waits on new's locks without bound (a prepared
  // transaction a crash left holds them until recovery). The client's own
  // lock_timeout comes back after pgshift's statements; a rollback to the
  // savepoint restores it too.
  const bool bounded = options.lock_timeout_s > 0;
  if (bounded) {
    add(StrCat("SELECT pg_catalog.set_config('pgshift.lock_timeout', "
               "pg_catalog.current_setting('lock_timeout'), true), "
               "pg_catalog.set_config('lock_timeout', ",
               QuoteLiteral(StrCat(static_cast<int64_t>(options.lock_timeout_s * 1000), "ms")),
               ", true)"),
        std::nullopt);
  }
  for (MirrorBatch::Rows& r : batch.rows) {
    if (r.mirror->truncate) {
      add(r.mirror->apply_sql, std::nullopt);
    } else if (r.count > 0) {
      r.json += ']';
      add(r.mirror->apply_sql, std::move(r.json));
    }
  }
  if (bounded && !batch.own_transaction()) add(kRestoreLockTimeout, std::nullopt);
  if (options.savepoint) add(kReleaseSavepoint, std::nullopt);
  if (!options.prepare_as.empty()) {
    add(StrCat("PREPARE TRANSACTION ", QuoteLiteral(options.prepare_as)), std::nullopt, false);
  }
  if (options.commit) add("COMMIT", std::nullopt);
  protocol::Sync{}.Encode(messages);
  co_return co_await c_.port.SendInternal(mirror, std::move(messages));
}

awaitable<InternalPort::Error> MirrorCoordinator::ApplyRows(Link& mirror, MirrorBatch& batch,
                                                            const ApplyOptions& options) {
  std::vector<std::string> parsed_here;
  std::shared_ptr<InternalReply> reply = co_await SendApply(mirror, batch, options, parsed_here);
  std::optional<ErrorFields> failed = co_await c_.port.AwaitInternal(reply, nullptr);
  if (failed) {
    for (const std::string& key : parsed_here) mirror.statements.erase(key);
  }
  co_return failed;
}

awaitable<InternalPort::Error> MirrorCoordinator::LogDivergence(Link& auth, const Keys& keys,
                                                                std::string_view error) {
  if (keys.empty()) co_return std::nullopt;
  // Appended, not rebuilt per key (linear time), and sent in statements of
  // at most about kMaxStatementBytes: many keys never make one statement
  // PostgreSQL would refuse, nor one buffer as large as all of them.
  static constexpr size_t kMaxStatementBytes = 1 << 20;
  const std::string error_literal = QuoteLiteral(error);
  std::optional<ErrorFields> failed;
  std::string values;
  for (size_t i = 0; i < keys.size() && !failed; ++i) {
    const auto& [table, key] = keys[i];
    if (!values.empty()) values += ", ";
    values += StrCat("(", QuoteLiteral(table), ", ", key ? QuoteLiteral(*key) : "NULL", ", ",
                     error_literal, ")");
    if (values.size() < kMaxStatementBytes && i + 1 < keys.size()) continue;
    std::string insert = StrCat("INSERT INTO ", routing::kDivergenceTable,
                                " (table_name, key, error) VALUES ", values);
    values.clear();
    failed = co_await c_.port.RunInternal(auth, insert);
  }
  LogEvent(failed ? LogLevel::kError : LogLevel::kWarning, "divergence_logged",
           {{"session", StrCat(c_.session)},
            {"backend", auth.name},
            {"keys", StrCat(keys.size())},
            {"result", failed ? failed->message() : "written"}});
  co_return failed;
}

}  // namespace pgshift::proxy
