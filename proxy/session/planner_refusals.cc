#include "common/strings.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "proxy/log.h"
#include "proxy/session/planner.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
namespace frontend = protocol::frontend;
namespace sqlstate = protocol::sqlstate;
using routing::BackendId;
}  // namespace

void Planner::Refuse(BackendId target, const routing::Refusal& refusal, bool simple_query) {
  uint64_t n = ctx_.refusals.Add(ErrorFields::Make("ERROR", refusal.sqlstate, refusal.message));
  LogEvent(LogLevel::kInfo, "statement_refused",
           {{"session", StrCat(ctx_.session_id)},
            {"sqlstate", refusal.sqlstate},
            {"reason", refusal.message}});
  std::string probe;
  if (simple_query) {
    protocol::Query{Refusals::ProbeSql(n)}.Encode(probe);
    ExpectQuery(target);
    AddOwned(target, std::move(probe));
    copy_link_ = target;
    return;
  }
  protocol::Parse{Refusals::ProbeStatementName(), Refusals::ProbeSql(n), {}}.Encode(probe);
  batch_link_ = target;
  batch_refused_ = true;
  AddOwned(target, std::move(probe));
  Target(target).batch = BatchEffect::kOpens;
}

std::optional<routing::Refusal> Planner::SecondWriter(const routing::Plan& plan, BackendId target) {
  if (!two_servers() || !plan.writes || !in_transaction()) return std::nullopt;
  const Link& other = link(routing::OtherBackend(target));
  if (!ctx_.transaction.wrote(other.server)) return std::nullopt;
  return routing::Refusal{
      std::string(sqlstate::kFeatureNotSupported),
      StrCat("pgshift: this transaction has written on server ", other.name, "; a write on server ",
             routing::BackendName(target), " would make one transaction span two servers")};
}

std::optional<routing::Refusal> Planner::ControlAfterImplicitMirroredWrite() {
  if (in_transaction()) return std::nullopt;
  // The write runs in the batch's implicit transaction, which pgshift's
  // Sync would end (and its portals with it) before the mirror applies.
  return routing::Refusal{
      std::string(sqlstate::kFeatureNotSupported),
      "pgshift: with two servers, a batch that writes to a migrating table outside a "
      "transaction block must end (Sync) before transaction control (COMMIT, ROLLBACK, "
      "SAVEPOINT, ...): begin a transaction first (BEGIN in the batch), or send the "
      "transaction control in a batch of its own"};
}

bool Planner::BatchMismatch(BackendId target) {
  if (!two_servers() || !batch_link_ || *batch_link_ == target) return false;
  routing::Refusal mixed{
      std::string(sqlstate::kFeatureNotSupported),
      StrCat("pgshift: this batch already runs on server ", routing::BackendName(*batch_link_),
             " and this message needs server ", routing::BackendName(target),
             "; send a Sync between them")};
  Refuse(*batch_link_, mixed, false);
  return true;
}

std::optional<routing::Refusal> Planner::MixedTransactionControl(const routing::Plan& plan) {
  if (plan.reads.empty() && plan.writes_to.empty()) return std::nullopt;
  return routing::Refusal{std::string(sqlstate::kFeatureNotSupported),
                          "pgshift: with two servers, send transaction control "
                          "(BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...) in a query of its "
                          "own, not with statements on migrating tables"};
}

namespace {

std::string_view StatementName(routing::TransactionKind kind) {
  using routing::TransactionKind;
  switch (kind) {
    case TransactionKind::kBegin: return "BEGIN";
    case TransactionKind::kRollback: return "ROLLBACK";
    case TransactionKind::kSavepoint: return "SAVEPOINT";
    case TransactionKind::kPrepare: return "PREPARE TRANSACTION";
    case TransactionKind::kCommitPrepared: return "COMMIT PREPARED";
    case TransactionKind::kRollbackPrepared: return "ROLLBACK PREPARED";
    case TransactionKind::kRelease: return "RELEASE";
    case TransactionKind::kRollbackTo: return "ROLLBACK TO";
    case TransactionKind::kCommit:
    case TransactionKind::kNone: break;
  }
  return "COMMIT";
}

}  // namespace

std::optional<routing::Refusal> Planner::UnsplittableQuery(
    const std::vector<routing::QueryStatement>& statements) {
  using routing::TransactionKind;
  bool in_block = in_transaction();
  for (size_t k = 0; k < statements.size(); ++k) {
    const TransactionKind kind = statements[k].transaction;
    if (kind == TransactionKind::kBegin) in_block = true;
    if (routing::EndsTransaction(kind)) in_block = false;
    if (kind != TransactionKind::kNone || in_block || k + 1 == statements.size()) continue;
    const TransactionKind next = statements[k + 1].transaction;
    if (next == TransactionKind::kCommit) continue;
    return routing::Refusal{
        std::string(sqlstate::kFeatureNotSupported),
        StrCat("pgshift: with two servers, this query runs statements outside a transaction "
               "block and then ",
               StatementName(next),
               ", which PostgreSQL would apply to them as one implicit transaction; pgshift "
               "sends transaction control on its own and cannot keep that: begin a transaction "
               "first (BEGIN; ...), or send the ",
               StatementName(next), " in a query of its own")};
  }
  return std::nullopt;
}

bool Planner::RunsOnBothServers(routing::TransactionKind kind) {
  return kind != routing::TransactionKind::kPrepare &&
         kind != routing::TransactionKind::kCommitPrepared &&
         kind != routing::TransactionKind::kRollbackPrepared;
}

}  // namespace pgshift::proxy
