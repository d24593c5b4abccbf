#include "proxy/session/planner.h"

#include <algorithm>

#include "common/strings.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/query.h"
#include "proxy/shadow_runner.h"
#include "routing/sql_analysis.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
namespace frontend = protocol::frontend;
namespace sqlstate = protocol::sqlstate;
using routing::BackendId;
}  // namespace

void Planner::Reset() {
  steps_running_ = true;
  for (size_t i = 0; i < count_; ++i) steps_[i].Clear();
  count_ = 0;
  split_messages_.clear();
  routing_ = !config().tables.empty();
}

protocol::Delivery Planner::OnHeader(char type, size_t) {
  if (type == frontend::kTerminate) terminated_ = true;
  if (!routing_) {
    if (type == frontend::kQuery || type == frontend::kSync || type == frontend::kFunctionCall) {
      ++queries_;
      if (type == frontend::kSync) {
        ExpectSync(BackendId::kOld);
      } else {
        ExpectQuery(BackendId::kOld);
      }
    }
    return protocol::Delivery::kStream;
  }
  switch (type) {
    case frontend::kQuery:
    case frontend::kParse:
    case frontend::kBind:
    case frontend::kExecute:
    case frontend::kDescribe:
    case frontend::kClose:
    case frontend::kSync:
    case frontend::kFlush:
    case frontend::kFunctionCall: return protocol::Delivery::kWhole;
    case frontend::kCopyDone:
    case frontend::kCopyFail:
      if (two_servers()) Target(copy_link_).ends_copy = true;
      return protocol::Delivery::kStream;
    default: return protocol::Delivery::kStream;  // COPY data, Terminate
  }
}

void Planner::OnStreamed(std::string_view bytes) {
  Target(routing_ ? copy_link_ : BackendId::kOld).bytes.Add(bytes);
}

void Planner::OnWhole(char type, std::string_view message) {
  std::string_view payload = message.substr(protocol::kHeaderSize);
  if (ended_in_batch_ && type != frontend::kFlush) {
    const BackendId ended = *std::exchange(ended_in_batch_, std::nullopt);
    if (type != frontend::kSync && type != frontend::kQuery && batch_link_ && !batch_refused_) {
      SplitBatch(ended);
    }
  }
  switch (type) {
    case frontend::kQuery: return OnQuery(message, payload);
    case frontend::kParse: return OnParse(message, payload);
    case frontend::kBind: return OnBind(message, payload);
    case frontend::kExecute: return OnExecute(message, payload);
    case frontend::kDescribe:
    case frontend::kClose: return OnDescribeOrClose(type, message, payload);
    case frontend::kSync: return OnSync(message);
    case frontend::kFlush: return Add(batch_link_.value_or(last_target_), message);
    case frontend::kFunctionCall:
      ++queries_;
      ExpectQuery(BackendId::kOld);
      return Add(BackendId::kOld, message);
    default: return Add(BackendId::kOld, message);
  }
}

Step& Planner::NewStep(BackendId target) {
  if (count_ == steps_.size()) steps_.emplace_back();
  Step& step = steps_[count_++];
  step.target = target;
  step.skip_if_failed = split_batch_group_;
  return step;
}

Step& Planner::Target(BackendId target) {
  if (count_ > 0 && steps_[count_ - 1].target == target && !steps_[count_ - 1].sealed) {
    return steps_[count_ - 1];
  }
  return NewStep(target);
}

void Planner::OpenStep(BackendId target) {
  if (!two_servers()) return;
  Step& step = NewStep(target);
  step.opens = true;
  // A later statement of a split Query runs once the ones before succeeded.
  if (!part_.first) step.skip_if_failed = part_.group;
}

void Planner::Add(BackendId target, std::string_view bytes) {
  Target(target).bytes.Add(bytes);
  last_target_ = target;
}

void Planner::AddOwned(BackendId target, std::string bytes) {
  Target(target).bytes.AddOwned(std::move(bytes));
  last_target_ = target;
}

ExpectedReply& Planner::ExpectQuery(BackendId target, std::vector<ReplyUnit> units) {
  ExpectedReply& reply = Target(target).replies.emplace_back();
  reply.units = std::move(units);
  reply.continues = !part_.last;
  reply.group = part_.group;
  return reply;
}

void Planner::ExpectSync(BackendId target) {
  std::vector<ExpectedReply>& replies = Target(target).replies;
  if (!replies.empty() && replies.back().open) {
    replies.back().open = false;
    return;
  }
  replies.emplace_back().joins_open = true;
}

void Planner::ExpectUnit(BackendId target, bool describe, const routing::PlanPtr& plan,
                         std::shared_ptr<ShadowCapture> capture) {
  ReplyUnit unit;
  unit.describe = describe;
  if (plan && !plan->shapes.empty()) unit.shape = plan->shapes[0];
  unit.capture = std::move(capture);
  std::vector<ExpectedReply>& replies = Target(target).replies;
  if (replies.empty() || !replies.back().open) {
    ExpectedReply& batch = replies.emplace_back();
    batch.open = true;
    batch.joins_open = true;
  }
  replies.back().units.push_back(std::move(unit));
}

void Planner::MarkStep(BackendId target, const routing::Plan& plan, bool simple_query) {
  if (!two_servers()) return;
  Step& step = Target(target);
  step.mirrored = step.mirrored || plan.mirrors_remotely;
  if (plan.mirrors_remotely) {
    step.in_client_transaction = in_transaction();
    if (!simple_query) mirrored_in_batch_ = true;
  }
  step.copy_in = plan.copies_in && plan.mirrors_remotely;
  step.transaction = plan.transaction;
  step.gid = plan.gid;
  // Transaction control that may have to fail in its place: a COMMIT or
  // PREPARE TRANSACTION whose mirror cannot be prepared, or any statement
  // that collects a failed pipelined mirror (MirrorCoordinator::Collect).
  switch (plan.transaction) {
    case routing::TransactionKind::kCommit:
    case routing::TransactionKind::kSavepoint:
    case routing::TransactionKind::kRelease:
    case routing::TransactionKind::kRollbackTo:
    case routing::TransactionKind::kPrepare: break;
    default: return;
  }
  step.fail_probe = ctx_.refusals.Reserve();
  if (simple_query) {
    protocol::Query{Refusals::ProbeSql(step.fail_probe)}.Encode(step.fail_with);
  } else {
    protocol::Execute{Refusals::ProbeName(step.fail_probe), 0}.Encode(step.fail_with);
  }
}

routing::PlanPtr Planner::PlanFor(std::string_view sql) {
  if (router().MayTouch(sql) ||
      (two_servers() && (in_transaction() || routing::MayBeginTransaction(sql) ||
                         routing::MayFinishPrepared(sql)))) {
    return router().PlanFor(sql);
  }
  return nullptr;
}

std::optional<routing::Refusal> Planner::NoteSettings(std::string_view sql) {
  if (!two_servers() || !routing::MayChangeSettings(sql)) return std::nullopt;
  std::vector<routing::SettingChange> changes = routing::SettingChangesOf(sql);
  // RESET ALL and DISCARD ALL only free: never refused.
  size_t adding = 0;
  for (const routing::SettingChange& change : changes) {
    if (change.kind == routing::SettingChange::kSession ||
        change.kind == routing::SettingChange::kTransaction) {
      adding += routing::SessionSettings::Bytes(change);
    }
  }
  if (adding > 0) {
    if (auto refusal = OverStateLimit(adding)) return refusal;
    if (ctx_.client_settings.changes() + changes.size() > routing::SessionSettings::kMaxChanges) {
      return routing::Refusal{
          std::string(sqlstate::kProgramLimitExceeded),
          StrCat("pgshift: this session would have ",
                 ctx_.client_settings.changes() + changes.size(),
                 " setting changes on record, above the ", routing::SessionSettings::kMaxChanges,
                 " pgshift keeps to replay on a second server; RESET ALL or end the transaction")};
    }
  }
  for (routing::SettingChange& change : changes) {
    ctx_.client_settings.Record(std::move(change), in_transaction());
  }
  return std::nullopt;
}

std::optional<routing::Refusal> Planner::OverStateLimit(size_t adding) const {
  const size_t held = client_.bytes() + ctx_.client_settings.bytes();
  const auto limit = static_cast<size_t>(ctx_.settings->config->proxy.client_state_max_bytes);
  if (held + adding <= limit) return std::nullopt;
  return routing::Refusal{
      std::string(sqlstate::kProgramLimitExceeded),
      StrCat("pgshift: this session's prepared statements, portals and setting changes would "
             "hold ",
             PrettySize(held + adding), ", above client_state_max_bytes (", PrettySize(limit),
             "); DEALLOCATE the statements it no longer uses")};
}

void Planner::NoteTransactionControl(const routing::Plan& plan) {
  if (plan.transaction == routing::TransactionKind::kBegin) {
    if (!in_transaction()) ctx_.transaction.sent = ClientTransaction::Sent::kBegun;
  } else if (plan.transaction == routing::TransactionKind::kCommit ||
             plan.transaction == routing::TransactionKind::kPrepare) {
    ctx_.transaction.commit_requested =
        in_transaction() && ctx_.transaction.reported != TransactionStatus::kFailed;
    ctx_.transaction.sent = ClientTransaction::Sent::kEnded;
  } else if (plan.transaction == routing::TransactionKind::kRollback) {
    ctx_.transaction.commit_requested = false;
    ctx_.transaction.sent = ClientTransaction::Sent::kEnded;
  }
}

void Planner::NoteWrite(const routing::Plan& plan, BackendId target) {
  if (plan.writes && (in_transaction() || plan.transaction_control)) {
    ctx_.transaction.Wrote(target);
    ctx_.transaction.written_tables.insert(ctx_.transaction.written_tables.end(),
                                           plan.writes_to.begin(), plan.writes_to.end());
  }
}

BackendId Planner::TransactionTarget(const routing::Plan& plan) {
  if (!plan.reads.empty() || !plan.writes_to.empty()) return plan.server;
  const Link& old = link(BackendId::kOld);
  const Link& fresh = link(BackendId::kNew);
  // The server the transaction wrote on (there is at most one) commits
  // last; with a mirror, it is the authoritative side.
  if (ctx_.transaction.wrote(BackendId::kOld)) return BackendId::kOld;
  if (ctx_.transaction.wrote(BackendId::kNew)) return BackendId::kNew;
  if (old.transaction_status == TransactionStatus::kIdle && fresh.ready() &&
      fresh.transaction_status != TransactionStatus::kIdle) {
    return BackendId::kNew;
  }
  return BackendId::kOld;
}

BackendId Planner::TargetOf(const routing::PlanPtr& plan) {
  if (!plan) return BackendId::kOld;
  return plan->transaction_control ? TransactionTarget(*plan) : plan->server;
}

void Planner::OnSync(std::string_view message) {
  ++queries_;
  BackendId target = batch_link_.value_or(last_target_);
  ExpectSync(target);
  Add(target, message);
  Target(target).batch = BatchEffect::kCloses;
  batch_link_.reset();
  batch_refused_ = false;
  mirrored_in_batch_ = false;
  split_batch_group_ = 0;
}

void Planner::OnQuery(std::string_view message, std::string_view payload) {
  ++queries_;
  auto query = protocol::Query::Decode(payload);
  if (!query.ok()) {
    error_ = std::string(MessageOf(query.status()));
    return;
  }
  PlanQuery(message, query->sql);
}

void Planner::PlanQuery(std::string_view message, std::string_view sql) {
  if (auto refusal = NoteSettings(sql)) {
    OpenStep(BackendId::kOld);
    Refuse(BackendId::kOld, *refusal, true);
    return Seal();
  }
  ForgetStatementsIfDeallocated(sql);
  if (client_.any_named() && RouteSqlPrepared(message, sql)) return;
  routing::PlanPtr plan = PlanFor(sql);
  if (!plan) {
    copy_link_ = BackendId::kOld;
    OpenStep(BackendId::kOld);
    return ForwardQuery(BackendId::kOld, message);
  }
  if (!plan->statements.empty()) return SplitQuery(*plan);
  NoteTransactionControl(*plan);
  plan->Count();
  BackendId target = TargetOf(plan);
  OpenStep(target);
  if (plan->refusal) {
    Refuse(target, *plan->refusal, true);
    return Seal();
  }
  if (auto refusal = Admit(*plan, ctx_.settings->generation)) {
    Refuse(target, *refusal, true);
    return Seal();
  }
  if (auto refusal = SecondWriter(*plan, target)) {
    Refuse(routing::OtherBackend(target), *refusal, true);
    return Seal();
  }
  NoteWrite(*plan, target);
  if (!plan->prepares.empty()) {
    SqlPrepared prepared{target, plan, std::string(sql), ctx_.settings->generation};
    client_.sql_prepared.erase(plan->prepares);
    if (auto refusal = OverStateLimit(plan->prepares.size() + Bytes(prepared))) {
      Refuse(target, *refusal, true);
      return Seal();
    }
    client_.sql_prepared.Put(plan->prepares, std::move(prepared));
  }
  if (plan->transaction_control && two_servers()) {
    if (auto refusal = MixedTransactionControl(*plan)) {
      Refuse(target, *refusal, true);
      return Seal();
    }
    if (RunsOnBothServers(plan->transaction)) Target(target).on_other_link_first = sql;
  }
  copy_link_ = target;
  if (!plan->parts.empty()) {
    AddParts(*plan);
    return Seal();
  }
  SendQuery(target, plan, message);
  Seal();
}

void Planner::SplitQuery(const routing::Plan& plan) {
  if (std::optional<routing::Refusal> refusal = UnsplittableQuery(plan.statements)) {
    BackendId target = TransactionTarget(plan);
    OpenStep(target);
    Refuse(target, *refusal, true);
    return Seal();
  }
  part_.group = ++next_group_;
  for (size_t k = 0; k < plan.statements.size() && error_.empty(); ++k) {
    part_.first = k == 0;
    part_.last = k + 1 == plan.statements.size();
    // Kept until the next read: the steps refer to it.
    std::string& message = split_messages_.emplace_back();
    protocol::Query{plan.statements[k].sql}.Encode(message);
    PlanQuery(message, plan.statements[k].sql);
  }
  part_ = QueryPart{};
}

void Planner::SendQuery(BackendId target, const routing::PlanPtr& plan, std::string_view message) {
  MarkStep(target, *plan, true);
  std::vector<ReplyUnit> units = Units(plan->shapes);
  if (ShadowCapture::Sampled(plan)) {
    if (std::shared_ptr<ShadowCapture> capture =
            ShadowCapture::Start(plan, nullptr, ctx_.transaction.written_tables, ctx_.shadow)) {
      if (units.empty()) units.resize(1);
      units[0].capture = std::move(capture);
    }
  }
  ExpectedReply& reply = ExpectQuery(target, std::move(units));
  if (!plan->rewritten) {
    Add(target, message);
  } else if (!plan->parameterized || !SendPrepared(target, *plan->parameterized, reply)) {
    std::string rewritten;
    protocol::Query{plan->sql}.Encode(rewritten);
    AddOwned(target, std::move(rewritten));
  }
}

void Planner::ForwardQuery(BackendId target, std::string_view message) {
  ExpectQuery(target);
  Add(target, message);
  Seal();
}

void Planner::Seal() {
  if (two_servers() && count_ > 0) steps_[count_ - 1].sealed = true;
}

std::vector<ReplyUnit> Planner::Units(const std::vector<routing::ResultShape>& shapes) {
  std::vector<ReplyUnit> units(shapes.size());
  for (size_t i = 0; i < units.size(); ++i) units[i].shape = shapes[i];
  return units;
}

void Planner::AddParts(const routing::Plan& plan) {
  // Within a split Query, its group goes on.
  uint64_t group = part_.group != 0 ? part_.group : ++next_group_;
  for (size_t k = 0; k < plan.parts.size(); ++k) {
    const routing::PlanPart& part = plan.parts[k];
    Step& step = k == 0 ? Target(part.server) : NewStep(part.server);
    step.opens = true;
    step.mirrored = std::any_of(part.shapes.begin(), part.shapes.end(),
                                [](const routing::ResultShape& r) { return r.remote != nullptr; });
    if (k > 0) step.skip_if_failed = group;
    ExpectedReply& reply = step.replies.emplace_back();
    reply.units = Units(part.shapes);
    reply.continues = k + 1 < plan.parts.size() || !part_.last;
    reply.group = group;
    std::string query;
    protocol::Query{part.sql}.Encode(query);
    AddOwned(part.server, std::move(query));
  }
}

}  // namespace pgshift::proxy
