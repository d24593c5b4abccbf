#include "common/strings.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/wire.h"
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

void Planner::StartBatch(BackendId target) {
  if (!batch_link_) OpenStep(target);
  batch_link_ = target;
  Target(target).batch = BatchEffect::kOpens;
}

void Planner::AddToBatch(BackendId target, std::string_view bytes) {
  StartBatch(target);
  Add(target, bytes);
}

void Planner::OnParse(std::string_view message, std::string_view payload) {
  auto parse = protocol::Parse::Decode(payload);
  if (!parse.ok()) {
    error_ = std::string(MessageOf(parse.status()));
    return;
  }
  if (batch_refused_) return Add(*batch_link_, message);
  if (auto refusal = NoteSettings(parse->sql)) {
    return Refuse(batch_link_.value_or(BackendId::kOld), *refusal, false);
  }
  ForgetStatementsIfDeallocated(parse->sql);
  routing::PlanPtr plan = PlanFor(parse->sql);
  client_.statements.erase(parse->statement);
  if (plan && plan->refusal) {
    plan->Count();
    return Refuse(batch_link_.value_or(plan->server), *plan->refusal, false);
  }
  BackendId target = TargetOf(plan);
  if (BatchMismatch(target)) return;
  if (plan || !parse->statement.empty()) {
    auto kept = std::make_shared<const protocol::Parse>(*parse);
    Prepared prepared{target, plan, nullptr, kept, ctx_.settings->generation};
    if (auto refusal = OverStateLimit(kept->statement.size() + Bytes(prepared))) {
      return Refuse(batch_link_.value_or(target), *refusal, false);
    }
    client_.statements.Put(kept->statement, std::move(prepared));
  }
  if (!plan || !plan->rewritten) return AddToBatch(target, message);
  std::string rewritten;
  protocol::Parse{parse->statement, plan->sql, parse->parameter_types}.Encode(rewritten);
  StartBatch(target);
  AddOwned(target, std::move(rewritten));
}

bool Planner::Refresh(Prepared& prepared) {
  if (!prepared.parse || prepared.generation == ctx_.settings->generation || batch_link_) {
    return true;
  }
  const protocol::Parse& parse = *prepared.parse;
  routing::PlanPtr plan = PlanFor(parse.sql);
  if (plan && plan->refusal) {
    plan->Count();
    client_.statements.erase(parse.statement);
    Refuse(plan->server, *plan->refusal, false);
    return false;
  }
  BackendId target = TargetOf(plan);
  const std::string& was = prepared.plan ? prepared.plan->sql : parse.sql;
  const std::string& now = plan ? plan->sql : parse.sql;
  if (target != prepared.server || was != now) {
    Step& step = NewStep(target);
    step.opens = true;
    if (target == prepared.server) {
      protocol::Close{protocol::Target::kStatement, parse.statement}.Encode(step.reprepare);
    } else {
      protocol::Close{protocol::Target::kStatement, parse.statement}.Encode(step.close_elsewhere);
      protocol::Sync{}.Encode(step.close_elsewhere);
    }
    protocol::Parse{parse.statement, now, parse.parameter_types}.Encode(step.reprepare);
    protocol::Sync{}.Encode(step.reprepare);
    LogEvent(LogLevel::kInfo, "statement_prepared_again",
             {{"session", StrCat(ctx_.session_id)},
              {"statement", parse.statement},
              {"server", routing::BackendName(target)}});
  }
  prepared = Prepared{target, plan, nullptr, prepared.parse, ctx_.settings->generation};
  client_.statements.Put(parse.statement, prepared);
  return true;
}

void Planner::OnBind(std::string_view message, std::string_view payload) {
  protocol::MessageReader reader(payload);
  std::string_view portal = reader.ReadCString();
  std::string_view statement = reader.ReadCString();
  if (!reader.ok()) {
    error_ = std::string(MessageOf(reader.Malformed("Bind")));
    return;
  }
  if (batch_refused_) return Add(*batch_link_, message);
  Prepared prepared = ClientStatements::Find(client_.statements, statement);
  if (!Refresh(prepared)) return;
  if (BatchMismatch(prepared.server)) return;
  if (prepared.plan) {
    // Sampled at Bind, so that only sampled executions copy their Bind.
    // Not kept past client_state_max_bytes: the execution is not shadowed.
    if (ShadowCapture::Sampled(prepared.plan) && !OverStateLimit(message.size())) {
      prepared.bind = std::make_shared<const std::string>(message);
    }
    prepared.parse = nullptr;  // the statement's; a portal is not prepared again
    client_.portals.erase(portal);
    if (auto refusal = OverStateLimit(portal.size() + Bytes(prepared))) {
      return Refuse(batch_link_.value_or(prepared.server), *refusal, false);
    }
    client_.portals.Put(portal, prepared);
  } else {
    client_.portals.erase(portal);
  }
  if (prepared.plan && prepared.plan->mirrors_remotely) {
    // Result formats given column by column must cover pgshift's two
    // mirror columns too (text).
    auto bind = protocol::Bind::Decode(payload);
    if (bind.ok() && bind->result_formats.size() > 1) {
      bind->result_formats.insert(bind->result_formats.end(), 2, 0);
      std::string rewritten;
      bind->Encode(rewritten);
      StartBatch(prepared.server);
      return AddOwned(prepared.server, std::move(rewritten));
    }
  }
  AddToBatch(prepared.server, message);
}

void Planner::OnExecute(std::string_view message, std::string_view payload) {
  protocol::MessageReader reader(payload);
  std::string_view portal = reader.ReadCString();
  if (!reader.ok()) {
    error_ = std::string(MessageOf(reader.Malformed("Execute")));
    return;
  }
  if (batch_refused_) return Add(*batch_link_, message);
  Prepared prepared = ClientStatements::Find(client_.portals, portal);
  if (BatchMismatch(prepared.server)) return;
  copy_link_ = prepared.server;
  if (!prepared.plan) {
    ExpectUnit(prepared.server, false, nullptr);
    return AddToBatch(prepared.server, message);
  }
  const routing::Plan& plan = *prepared.plan;
  plan.Count();
  if (auto refusal = Admit(plan, prepared.generation))
    return Refuse(prepared.server, *refusal, false);
  if (auto refusal = SecondWriter(plan, prepared.server)) {
    return Refuse(prepared.server, *refusal, false);
  }
  if (mirrored_in_batch_ && plan.transaction_control) {
    if (auto refusal = ControlAfterImplicitMirroredWrite()) {
      return Refuse(prepared.server, *refusal, false);
    }
    SplitBatch(prepared.server);
  }
  // A mirrored write answers with its rows (pgshift's columns across
  // servers, the CTE's on one database): under a row limit (pgjdbc sends 1
  // for a statement without one) all but the first would stay unmirrored,
  // and the client would get PortalSuspended where the write it sent
  // completes. Without a RETURNING of the client's the limit changes
  // nothing it sees; with one, on one database the CTE wrote every row
  // anyway and the limit stands.
  std::string unlimited;
  const bool mirrored_write = !plan.shapes.empty() && plan.shapes[0].counts_rows != nullptr;
  if (plan.mirrors_remotely || mirrored_write) {
    auto execute = protocol::Execute::Decode(payload);
    const bool client_rows = plan.shapes.empty() || !plan.shapes[0].no_rows;
    if (execute.ok() && execute->max_rows != 0 && (plan.mirrors_remotely || !client_rows)) {
      if (client_rows) {
        return Refuse(prepared.server,
                      routing::Refusal{std::string(sqlstate::kFeatureNotSupported),
                                       "pgshift: a write with RETURNING on a table mirrored to "
                                       "the other server must be executed whole (Execute "
                                       "without a row limit)"},
                      false);
      }
      execute->max_rows = 0;
      execute->Encode(unlimited);
    }
  }
  NoteWrite(plan, prepared.server);
  NoteTransactionControl(plan);
  std::shared_ptr<ShadowCapture> capture;
  if (prepared.bind) {
    capture = ShadowCapture::Start(prepared.plan, prepared.bind, ctx_.transaction.written_tables,
                                   ctx_.shadow);
  }
  if (plan.transaction_control && two_servers() && RunsOnBothServers(plan.transaction)) {
    Target(prepared.server).on_other_link_first = plan.sql;
  }
  MarkStep(prepared.server, plan, false);
  ExpectUnit(prepared.server, false, prepared.plan, std::move(capture));
  if (unlimited.empty()) {
    AddToBatch(prepared.server, message);
  } else {
    StartBatch(prepared.server);
    AddOwned(prepared.server, std::move(unlimited));
  }
  if (plan.transaction_control) Seal();
  if (two_servers() && routing::EndsTransaction(plan.transaction))
    ended_in_batch_ = prepared.server;
}

void Planner::SplitBatch(BackendId target) {
  // One group for the batch however often it is split: a failed part
  // skips every step after it, up to and with the client's Sync.
  const uint64_t group = split_batch_group_ != 0 ? split_batch_group_ : ++next_group_;
  ExpectSync(target);
  ExpectedReply& part = Target(target).replies.back();
  part.continues = true;
  part.group = group;
  std::string sync;
  protocol::Sync{}.Encode(sync);
  AddOwned(target, std::move(sync));
  Target(target).batch = BatchEffect::kCloses;
  Seal();
  split_batch_group_ = group;
  NewStep(target).opens = true;
  mirrored_in_batch_ = false;
}

void Planner::OnDescribeOrClose(char type, std::string_view message, std::string_view payload) {
  protocol::Target target = protocol::Target::kStatement;
  std::string name;
  if (!protocol::ReadTargetAndName(payload, target, name)) {
    error_ = StrCat("malformed ", protocol::FrontendMessageName(type), " message");
    return;
  }
  if (batch_refused_) return Add(*batch_link_, message);
  auto& map = target == protocol::Target::kStatement ? client_.statements : client_.portals;
  Prepared prepared = ClientStatements::Find(map, name);
  if (type == frontend::kDescribe && target == protocol::Target::kStatement && !Refresh(prepared)) {
    return;
  }
  if (BatchMismatch(prepared.server)) return;
  if (type == frontend::kClose) {
    map.erase(name);
  } else {
    ExpectUnit(prepared.server, true, prepared.plan);
  }
  AddToBatch(prepared.server, message);
}

}  // namespace pgshift::proxy
