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

std::optional<routing::Refusal> Planner::ControlAfterMirroredWrite(const routing::Plan& plan) {
  if (!mirrored_in_batch_ || !plan.transaction_control) return std::nullopt;
  return routing::Refusal{
      std::string(sqlstate::kFeatureNotSupported),
      "pgshift: with two servers, a batch that writes to a migrating table must end "
      "(Sync) before transaction control (COMMIT, ROLLBACK, SAVEPOINT, ...): send it "
      "in a batch of its own"};
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

}  // namespace pgshift::proxy
