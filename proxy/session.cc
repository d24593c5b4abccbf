#include "proxy/session.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"
#include "protocol/wire.h"
#include "proxy/backend_login.h"
#include "proxy/client_login.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "routing/mirror.h"
#include "routing/sql_analysis.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace backend = protocol::backend;
namespace frontend = protocol::frontend;
namespace sqlstate = protocol::sqlstate;

ErrorFields AdminShutdown() {
  return Fatal(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
}

}  // namespace

// Client to backend. Without configured tables every message is streamed
// to old untouched. With them, the messages that carry or follow SQL are
// read whole: Query and Parse are planned (the fast path skips planning
// for text that names no configured table), Bind, Describe, Execute and
// Close follow their statement or portal, Sync and Flush their batch.
class Session::ClientToBackend : public protocol::FrameHandler {
 public:
  explicit ClientToBackend(Session& s) : s_(s) {}

  void Reset() {
    for (size_t i = 0; i < count; ++i) steps[i].Clear();
    count = 0;
    routing_ = !s_.config().tables.empty();
  }

  protocol::Delivery OnHeader(char type, size_t) override {
    if (type == frontend::kTerminate) terminated = true;
    if (!routing_) {
      if (type == frontend::kQuery || type == frontend::kSync || type == frontend::kFunctionCall) {
        ++s_.queries_;
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
        if (two_servers()) Target(s_.copy_link_).ends_copy = true;
        return protocol::Delivery::kStream;
      default:
        return protocol::Delivery::kStream;  // COPY data, Terminate
    }
  }

  void OnStreamed(std::string_view bytes) override {
    Target(routing_ ? s_.copy_link_ : BackendId::kOld).bytes.Add(bytes);
  }

  void OnWhole(char type, std::string_view message) override {
    std::string_view payload = message.substr(protocol::kHeaderSize);
    switch (type) {
      case frontend::kQuery: return OnQuery(message, payload);
      case frontend::kParse: return OnParse(message, payload);
      case frontend::kBind: return OnBind(message, payload);
      case frontend::kExecute: return OnExecute(message, payload);
      case frontend::kDescribe:
      case frontend::kClose: return OnDescribeOrClose(type, message, payload);
      case frontend::kSync: {
        ++s_.queries_;
        BackendId target = s_.batch_link_.value_or(last_target_);
        ExpectSync(target);
        Add(target, message);
        s_.link(target).in_batch = false;
        s_.batch_link_.reset();
        s_.batch_refused_ = false;
        mirrored_in_batch_ = false;
        return;
      }
      case frontend::kFlush: return Add(s_.batch_link_.value_or(last_target_), message);
      case frontend::kFunctionCall:
        ++s_.queries_;
        ExpectQuery(BackendId::kOld);
        return Add(BackendId::kOld, message);
      default:
        return Add(BackendId::kOld, message);
    }
  }

  std::vector<Step> steps;  // the first `count` are this read's
  size_t count = 0;
  bool terminated = false;
  std::string error;  // a malformed message: the session ends with 08P01
  // A write mirrored across servers is in the client's open extended batch.
  bool mirrored_in_batch_ = false;

 private:
  routing::Router& router() { return *s_.settings_->router; }
  bool two_servers() { return router().has_new_server(); }
  // As the client's statements planned so far leave it: a BEGIN sent ahead
  // of its reply (pgjdbc sends it in the batch of the first statement)
  // makes what follows part of the client's transaction.
  bool in_transaction() const {
    switch (s_.sent_transaction_) {
      case SentTransaction::kBegun: return true;
      case SentTransaction::kEnded: return false;
      case SentTransaction::kAsReported: break;
    }
    return s_.transaction_status_ != TransactionStatus::kIdle;
  }

  Step& NewStep(BackendId target) {
    if (count == steps.size()) steps.emplace_back();
    Step& step = steps[count++];
    step.target = target;
    return step;
  }
  Step& Target(BackendId target) {
    if (count > 0 && steps[count - 1].target == target && !steps[count - 1].sealed) {
      return steps[count - 1];
    }
    return NewStep(target);
  }
  // With two servers a Query, and an extended batch, starts a step of its
  // own, so that pgshift may begin a transaction before it (a write mirrored
  // across servers outside one) or act between it and what follows.
  void OpenStep(BackendId target) {
    if (two_servers()) NewStep(target).opens = true;
  }
  void Add(BackendId target, std::string_view bytes) {
    Target(target).bytes.Add(bytes);
    last_target_ = target;
  }
  void AddOwned(BackendId target, std::string bytes) {
    Target(target).bytes.AddOwned(std::move(bytes));
    last_target_ = target;
  }
  // What the Query about to be added will be answered with.
  ExpectedReply& ExpectQuery(BackendId target, std::vector<ReplyUnit> units = {}) {
    ExpectedReply& reply = Target(target).replies.emplace_back();
    reply.units = std::move(units);
    return reply;
  }
  // A Sync closes its batch's reply cycle.
  void ExpectSync(BackendId target) {
    std::vector<ExpectedReply>& replies = Target(target).replies;
    if (!replies.empty() && replies.back().open) {
      replies.back().open = false;
      return;
    }
    replies.emplace_back().joins_open = true;
  }
  // The result of an Execute or the answer to a Describe, reshaped as
  // `plan` says for its statement.
  void NoteUnit(BackendId target, bool describe, const routing::PlanPtr& plan,
                std::shared_ptr<ShadowCapture> capture = nullptr) {
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
  // Extended-protocol messages go where their batch goes.
  void StartBatch(BackendId target) {
    if (!s_.batch_link_) OpenStep(target);
    s_.batch_link_ = target;
    s_.link(target).in_batch = true;
  }
  void AddToBatch(BackendId target, std::string_view bytes) {
    StartBatch(target);
    Add(target, bytes);
  }
  // The step of a COMMIT, SAVEPOINT or mirrored write, which pgshift
  // prepares for when it runs. A COMMIT gets a stand-in that fails in its
  // place, in case the mirror cannot be prepared.
  void MarkStep(BackendId target, const routing::Plan& plan, bool simple_query) {
    if (!two_servers()) return;
    Step& step = Target(target);
    step.mirrored = step.mirrored || plan.mirrors_remotely;
    if (plan.mirrors_remotely) {
      step.in_client_transaction = in_transaction();
      if (!simple_query) mirrored_in_batch_ = true;
    }
    step.copy_in = plan.copies_in && plan.mirrors_remotely;
    step.transaction = plan.transaction;
    if (plan.transaction != routing::TransactionKind::kCommit) return;
    step.fail_probe = s_.refusals_.Reserve();
    if (simple_query) {
      protocol::Query{Refusals::ProbeSql(step.fail_probe)}.Encode(step.fail_with);
    } else {
      protocol::Execute{Refusals::ProbeName(step.fail_probe), 0}.Encode(step.fail_with);
    }
  }

  // Outside the fast path, and in any transaction when a second server is
  // in play (so that writes and transaction control are known), a text gets
  // a plan.
  routing::PlanPtr PlanFor(std::string_view sql) {
    if (router().MayTouch(sql) ||
        (two_servers() && (in_transaction() || routing::MayBeginTransaction(sql)))) {
      return router().PlanFor(sql);
    }
    return nullptr;
  }

  // Answers in place of the statement with `refusal`, raised on `target`.
  void Refuse(BackendId target, const routing::Refusal& refusal, bool simple_query) {
    uint64_t n = s_.refusals_.Add(ErrorFields::Make("ERROR", refusal.sqlstate, refusal.message));
    LogEvent(LogLevel::kInfo, "statement_refused",
             {{"session", StrCat(s_.id_)}, {"sqlstate", refusal.sqlstate},
              {"reason", refusal.message}});
    std::string probe;
    if (simple_query) {
      protocol::Query{Refusals::ProbeSql(n)}.Encode(probe);
      ExpectQuery(target);
      AddOwned(target, std::move(probe));
      s_.copy_link_ = target;
      return;
    }
    protocol::Parse{Refusals::ProbeStatementName(), Refusals::ProbeSql(n), {}}.Encode(probe);
    s_.batch_link_ = target;
    s_.batch_refused_ = true;
    s_.link(target).in_batch = true;
    AddOwned(target, std::move(probe));
  }

  // A transaction may write on one server only: its commit cannot be made
  // atomic across two.
  std::optional<routing::Refusal> SecondWriter(const routing::Plan& plan, BackendId target) {
    if (!two_servers() || !plan.writes || !in_transaction()) return std::nullopt;
    const Link& other = s_.link(routing::OtherBackend(target));
    if (!other.written) return std::nullopt;
    return routing::Refusal{
        std::string(sqlstate::kFeatureNotSupported),
        StrCat("pgshift: this transaction has written on server ", other.name,
               "; a write on server ", routing::BackendName(target),
               " would make one transaction span two servers")};
  }

  // With a second server, the client's setting changes, which run on old
  // only, are kept so that new can be given them (Session::SyncSettings).
  // A prepared one counts when it is parsed.
  void NoteSettings(std::string_view sql) {
    if (!two_servers() || !routing::MayChangeSettings(sql)) return;
    for (routing::SettingChange& change : routing::SettingChangesOf(sql)) {
      s_.client_settings_.Record(std::move(change), in_transaction());
    }
  }
  // The client's transaction as this statement leaves it, and whether the
  // transaction's setting changes stand once it ends.
  void NoteTransactionControl(const routing::Plan& plan) {
    if (plan.transaction == routing::TransactionKind::kBegin) {
      if (!in_transaction()) s_.sent_transaction_ = SentTransaction::kBegun;
    } else if (plan.transaction == routing::TransactionKind::kCommit) {
      s_.commit_requested_ =
          in_transaction() && s_.transaction_status_ != TransactionStatus::kFailed;
      s_.sent_transaction_ = SentTransaction::kEnded;
    } else if (plan.transaction == routing::TransactionKind::kRollback) {
      s_.commit_requested_ = false;
      s_.sent_transaction_ = SentTransaction::kEnded;
    }
  }

  // A write mirrored across servers is applied once its batch's
  // ReadyForQuery has come: transaction control after it in the same batch
  // would run on the mirror before the write it follows.
  std::optional<routing::Refusal> ControlAfterMirroredWrite(const routing::Plan& plan) {
    if (!mirrored_in_batch_ || !plan.transaction_control) return std::nullopt;
    return routing::Refusal{
        std::string(sqlstate::kFeatureNotSupported),
        "pgshift: with two servers, a batch that writes to a migrating table must end "
        "(Sync) before transaction control (COMMIT, ROLLBACK, SAVEPOINT, ...): send it "
        "in a batch of its own"};
  }

  void NoteWrite(const routing::Plan& plan, BackendId target) {
    if (plan.writes && (in_transaction() || plan.transaction_control)) {
      s_.link(target).written = true;
      s_.written_tables_.insert(s_.written_tables_.end(), plan.writes_to.begin(),
                                plan.writes_to.end());
    }
  }

  // Whether this execution of a shadowed read is in the sample.
  static bool Sampled(const routing::PlanPtr& plan) {
    if (!plan || !plan->shadow || plan->refusal) return false;
    thread_local std::mt19937_64 random(std::random_device{}());
    return std::uniform_real_distribution<double>(0, 1)(random) < plan->shadow->sample;
  }

  // A sampled execution of a shadowed read is compared off the client's
  // path, unless the transaction has written one of its tables. When its
  // results come as text, the client's result is kept for the comparison
  // (the capture returned), and the job queued once it is complete.
  std::shared_ptr<ShadowCapture> Shadow(const routing::PlanPtr& plan,
                                        std::shared_ptr<const std::string> bind) {
    if (s_.shadow_ == nullptr) return nullptr;
    const routing::ShadowPlan& shadow = *plan->shadow;
    for (routing::TableCounters* t : shadow.counters) {
      if (std::find(s_.written_tables_.begin(), s_.written_tables_.end(), t) !=
          s_.written_tables_.end()) {
        shadow.Count(&routing::TableCounters::shadow_skipped);
        return nullptr;
      }
    }
    ShadowJob job{plan, bind, nullptr};
    if (bind) {
      auto decoded = protocol::Bind::Decode(std::string_view(*bind).substr(protocol::kHeaderSize));
      bool text = decoded.ok() && std::all_of(decoded->result_formats.begin(),
                                              decoded->result_formats.end(),
                                              [](int16_t f) { return f == 0; });
      if (!text) {
        s_.shadow_->Enqueue(std::move(job));
        return nullptr;
      }
    }
    auto capture = std::make_shared<ShadowCapture>();
    capture->job = std::move(job);
    return capture;
  }

  // Transaction control with no table goes where the client's transaction
  // is, and the other server, when it is in the transaction too, runs it
  // first.
  BackendId TransactionTarget(const routing::Plan& plan) {
    if (!plan.reads.empty() || !plan.writes_to.empty()) return plan.server;
    const Link& old = s_.link(BackendId::kOld);
    const Link& fresh = s_.link(BackendId::kNew);
    // The server the transaction wrote on (there is at most one) commits
    // last; with a mirror, it is the authoritative side.
    if (old.written) return BackendId::kOld;
    if (fresh.written) return BackendId::kNew;
    if (old.transaction_status == TransactionStatus::kIdle && !fresh.absent() &&
        fresh.transaction_status != TransactionStatus::kIdle) {
      return BackendId::kNew;
    }
    return BackendId::kOld;
  }

  // The server a statement goes to: its plan's (transaction control goes
  // where the client's transaction is), or old without a plan.
  BackendId TargetOf(const routing::PlanPtr& plan) {
    if (!plan) return BackendId::kOld;
    return plan->transaction_control ? TransactionTarget(*plan) : plan->server;
  }

  void OnQuery(std::string_view message, std::string_view payload) {
    ++s_.queries_;
    auto query = protocol::Query::Decode(payload);
    if (!query.ok()) {
      error = std::string(MessageOf(query.status()));
      return;
    }
    ForgetStatementsIfDeallocated(query->sql);
    NoteSettings(query->sql);
    if (!s_.sql_prepared_.empty() && RouteSqlPrepared(message, query->sql)) return;
    routing::PlanPtr plan = PlanFor(query->sql);
    if (plan) NoteTransactionControl(*plan);
    if (!plan) {
      s_.copy_link_ = BackendId::kOld;
      OpenStep(BackendId::kOld);
      return ForwardQuery(BackendId::kOld, message);
    }
    plan->Count();
    BackendId target = TargetOf(plan);
    OpenStep(target);
    if (plan->refusal) {
      Refuse(target, *plan->refusal, true);
      return Seal();
    }
    if (auto refusal = SecondWriter(*plan, target)) {
      Refuse(routing::OtherBackend(target), *refusal, true);
      return Seal();
    }
    NoteWrite(*plan, target);
    if (!plan->prepares.empty()) {
      s_.sql_prepared_[plan->prepares] =
          SqlPrepared{target, plan, query->sql, s_.settings_->generation};
    }
    if (plan->transaction_control && two_servers()) {
      if (!plan->reads.empty() || !plan->writes_to.empty()) {
        routing::Refusal mixed{std::string(sqlstate::kFeatureNotSupported),
                               "pgshift: with two servers, send transaction control "
                               "(BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...) in a query of its "
                               "own, not with statements on migrating tables"};
        Refuse(target, mixed, true);
        return Seal();
      }
      Target(target).on_other_link_first = query->sql;
    }
    s_.copy_link_ = target;
    if (!plan->parts.empty()) {
      AddParts(*plan);
      return Seal();
    }
    MarkStep(target, *plan, true);
    std::vector<ReplyUnit> units = Units(plan->shapes);
    if (Sampled(plan)) {
      if (std::shared_ptr<ShadowCapture> capture = Shadow(plan, nullptr)) {
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
    Seal();
  }

  // An SQL-level EXECUTE or DEALLOCATE of a statement PREPAREd on a
  // configured table goes where the PREPARE went; one prepared under
  // earlier settings is prepared again first (on its new server, and
  // dropped on the old one), unseen by the client. DEALLOCATE ALL and
  // DISCARD ALL go to old as any statement does, and drop those on new
  // too. True when `sql` was routed here.
  bool RouteSqlPrepared(std::string_view message, std::string_view sql) {
    bool may = false;
    for (std::string_view word : {"execute", "deallocate", "prepare", "discard"}) {
      may = may || ContainsIgnoreCase(sql, word);
    }
    std::optional<routing::PreparedStatementUse> use;
    if (may) use = routing::PreparedStatementUseOf(sql);
    if (!use) return false;
    using Use = routing::PreparedStatementUse;
    auto& prepared = s_.sql_prepared_;
    if (use->kind == Use::kPrepare) {
      prepared.erase(use->name);  // a plan, if any, records it again
      return false;
    }
    if (use->kind == Use::kDeallocate && use->name.empty()) {
      std::string on_new;
      for (const auto& [name, p] : prepared) {
        if (p.server == BackendId::kNew) {
          on_new = StrCat(on_new, "DEALLOCATE ", routing::QuoteIdent(name), ";");
        }
      }
      prepared.clear();
      if (on_new.empty()) return false;
      Step& step = NewStep(BackendId::kOld);
      step.opens = true;
      protocol::Query{on_new}.Encode(step.close_elsewhere);
      ForwardQuery(BackendId::kOld, message);
      return true;
    }
    auto it = prepared.find(use->name);
    if (it == prepared.end()) return false;
    SqlPrepared& p = it->second;
    if (use->kind == Use::kDeallocate) {
      BackendId server = p.server;
      prepared.erase(it);
      OpenStep(server);
      ForwardQuery(server, message);
      return true;
    }
    bool stepped = false;  // a step of its own already opened (to prepare it again)
    if (p.generation != s_.settings_->generation) {
      std::string name = use->name;
      if (!Reprepare(name, p)) return true;
      stepped = true;
      it = prepared.find(name);
      if (it == prepared.end()) return false;  // now as any other statement
    }
    const SqlPrepared& now = it->second;
    if (!stepped) OpenStep(now.server);
    if (auto refusal = SecondWriter(*now.plan, now.server)) {
      Refuse(routing::OtherBackend(now.server), *refusal, true);
      Seal();
      return true;
    }
    NoteWrite(*now.plan, now.server);
    ForwardQuery(now.server, message);
    return true;
  }

  // Plans an SQL-level PREPARE again under the current settings and
  // prepares it again where that plan sends it, in a step of its own that
  // the EXECUTE joins. False when the new plan refuses it (the refusal
  // answers the EXECUTE). Its entry is gone when it no longer touches a
  // configured table.
  bool Reprepare(const std::string& name, SqlPrepared& p) {
    routing::PlanPtr plan = PlanFor(p.sql);
    BackendId target = plan ? TargetOf(plan) : BackendId::kOld;
    if (plan && plan->refusal) {
      s_.sql_prepared_.erase(name);
      OpenStep(target);
      Refuse(target, *plan->refusal, true);
      Seal();
      return false;
    }
    const std::string& now = plan ? plan->sql : p.sql;
    Step& step = NewStep(target);
    step.opens = true;
    if (!plan || target != p.server || now != p.plan->sql) {
      std::string drop = StrCat("DEALLOCATE ", routing::QuoteIdent(name));
      if (target == p.server) {
        protocol::Query{StrCat(drop, "; ", now)}.Encode(step.reprepare);
      } else {
        protocol::Query{drop}.Encode(step.close_elsewhere);
        protocol::Query{now}.Encode(step.reprepare);
      }
      LogEvent(LogLevel::kInfo, "statement_prepared_again",
               {{"session", StrCat(s_.id_)}, {"statement", name},
                {"server", routing::BackendName(target)}});
    }
    if (!plan) {
      // It no longer touches a configured table: old, as any other.
      s_.sql_prepared_.erase(name);
      return true;
    }
    p = SqlPrepared{target, plan, p.sql, s_.settings_->generation};
    return true;
  }

  // A Query as an extended batch on a statement pgshift prepares once per
  // server connection: PostgreSQL parses and plans a mirrored write's long
  // text once, not on every execution. False: sent as a Query after all.
  bool SendPrepared(BackendId target, const routing::ParameterizedText& p, ExpectedReply& reply) {
    static constexpr size_t kMaxStatements = 256;  // per connection; then the least used goes
    Link& link = s_.link(target);
    // In an aborted transaction the Parse would fail as the Query does,
    // and in the client's open batch a Sync of pgshift's would end it.
    if (s_.transaction_status_ == TransactionStatus::kFailed || s_.batch_link_ || link.in_batch) {
      return false;
    }
    std::string key = p.sql;
    key.push_back('\0');
    for (int32_t type : p.types) key += StrCat(type, " ");
    std::string messages;
    std::string name;
    if (auto it = link.statements.find(key); it != link.statements.end()) {
      if (!it->second.parsed) return false;
      name = it->second.name;
      it->second.last_used = ++link.statement_uses;
    } else {
      if (link.statements.size() >= kMaxStatements && !CloseLeastUsed(link, messages)) {
        return false;
      }
      name = StrCat("pgshift_statement_", ++s_.next_statement_);
      protocol::Parse{name, p.sql, p.types}.Encode(messages);
      link.statements.emplace(key, Link::ServerStatement{name, false, ++link.statement_uses});
      reply.prepares = true;
    }
    protocol::Bind bind;
    bind.statement = name;
    bind.parameters.assign(p.values.begin(), p.values.end());
    bind.Encode(messages);
    protocol::Describe{protocol::Target::kPortal, ""}.Encode(messages);
    protocol::Execute{"", 0}.Encode(messages);
    protocol::Sync{}.Encode(messages);
    reply.statement_key = std::move(key);
    AddOwned(target, std::move(messages));
    return true;
  }

  // Makes room among a full link's statements: the one used least recently
  // (and not in flight) is closed ahead of the Parse in `messages`.
  static bool CloseLeastUsed(Link& link, std::string& messages) {
    auto oldest = link.statements.end();
    for (auto it = link.statements.begin(); it != link.statements.end(); ++it) {
      if (!it->second.parsed) continue;
      if (oldest == link.statements.end() || it->second.last_used < oldest->second.last_used) {
        oldest = it;
      }
    }
    if (oldest == link.statements.end()) return false;
    protocol::Close{protocol::Target::kStatement, oldest->second.name}.Encode(messages);
    link.statements.erase(oldest);
    return true;
  }

  // DISCARD ALL and DEALLOCATE drop pgshift's prepared statements with the
  // client's. A text that merely mentions either word costs only preparing
  // again, under new names, so a case-insensitive search is enough here.
  // Such a text names no configured table, so it runs on old: new keeps
  // pgshift's statements (forgetting them there would leave them behind).
  void ForgetStatementsIfDeallocated(std::string_view sql) {
    Link& old = s_.link(BackendId::kOld);
    if (old.statements.empty()) return;
    if (ContainsIgnoreCase(sql, "discard") || ContainsIgnoreCase(sql, "deallocate")) {
      old.statements.clear();
    }
  }

  // The client's Query as it is, answered as it would be directly.
  void ForwardQuery(BackendId target, std::string_view message) {
    ExpectQuery(target);
    Add(target, message);
    Seal();
  }

  // Nothing more goes into the current step (two servers only).
  void Seal() {
    if (two_servers() && count > 0) steps[count - 1].sealed = true;
  }

  static std::vector<ReplyUnit> Units(const std::vector<routing::ResultShape>& shapes) {
    std::vector<ReplyUnit> units(shapes.size());
    for (size_t i = 0; i < units.size(); ++i) units[i].shape = shapes[i];
    return units;
  }

  // A Query whose statements need different servers: one Query per part,
  // each sent once the one before has succeeded.
  void AddParts(const routing::Plan& plan) {
    uint64_t group = ++s_.next_group_;
    for (size_t k = 0; k < plan.parts.size(); ++k) {
      const routing::PlanPart& part = plan.parts[k];
      Step& step = k == 0 ? Target(part.server) : NewStep(part.server);
      step.opens = true;
      step.mirrored = std::any_of(part.shapes.begin(), part.shapes.end(),
                                  [](const routing::ResultShape& r) { return r.remote != nullptr; });
      if (k > 0) step.skip_if_failed = group;
      ExpectedReply& reply = step.replies.emplace_back();
      reply.units = Units(part.shapes);
      reply.continues = k + 1 < plan.parts.size();
      reply.group = group;
      std::string query;
      protocol::Query{part.sql}.Encode(query);
      AddOwned(part.server, std::move(query));
    }
  }

  // One batch (up to Sync) goes to one server; a message for the other is
  // refused, and the server skips the rest of the batch.
  bool BatchMismatch(BackendId target) {
    if (!two_servers() || !s_.batch_link_ || *s_.batch_link_ == target) return false;
    routing::Refusal mixed{
        std::string(sqlstate::kFeatureNotSupported),
        StrCat("pgshift: this batch already runs on server ", routing::BackendName(*s_.batch_link_),
               " and this message needs server ", routing::BackendName(target),
               "; send a Sync between them")};
    Refuse(*s_.batch_link_, mixed, false);
    return true;
  }

  void OnParse(std::string_view message, std::string_view payload) {
    auto parse = protocol::Parse::Decode(payload);
    if (!parse.ok()) {
      error = std::string(MessageOf(parse.status()));
      return;
    }
    ForgetStatementsIfDeallocated(parse->sql);
    NoteSettings(parse->sql);
    if (s_.batch_refused_) return Add(*s_.batch_link_, message);
    routing::PlanPtr plan = PlanFor(parse->sql);
    s_.statements_.erase(parse->statement);
    if (plan && plan->refusal) {
      plan->Count();
      return Refuse(s_.batch_link_.value_or(plan->server), *plan->refusal, false);
    }
    BackendId target = TargetOf(plan);
    if (BatchMismatch(target)) return;
    if (plan || !parse->statement.empty()) {
      auto kept = std::make_shared<const protocol::Parse>(*parse);
      s_.statements_[kept->statement] = Prepared{target, plan, nullptr, kept, s_.settings_->generation};
    }
    if (!plan || !plan->rewritten) return AddToBatch(target, message);
    std::string rewritten;
    protocol::Parse{parse->statement, plan->sql, parse->parameter_types}.Encode(rewritten);
    StartBatch(target);
    AddOwned(target, std::move(rewritten));
  }

  Prepared Find(const absl::flat_hash_map<std::string, Prepared>& map, std::string_view name) {
    auto it = map.find(ToAbsl(name));
    return it == map.end() ? Prepared{} : it->second;
  }

  // A named statement prepared under earlier settings is planned again when
  // a batch begins with it; when its text or server changed, it is
  // prepared again there (and closed where it was) before the batch, unseen
  // by the client. Mid-batch it keeps its plan until the next batch. False
  // when the new plan refuses it (a refusal is in place).
  bool Refresh(Prepared& prepared) {
    if (!prepared.parse || prepared.generation == s_.settings_->generation || s_.batch_link_) {
      return true;
    }
    const protocol::Parse& parse = *prepared.parse;
    routing::PlanPtr plan = PlanFor(parse.sql);
    if (plan && plan->refusal) {
      plan->Count();
      s_.statements_.erase(parse.statement);
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
               {{"session", StrCat(s_.id_)}, {"statement", parse.statement},
                {"server", routing::BackendName(target)}});
    }
    prepared = Prepared{target, plan, nullptr, prepared.parse, s_.settings_->generation};
    s_.statements_[parse.statement] = prepared;
    return true;
  }

  void OnBind(std::string_view message, std::string_view payload) {
    protocol::MessageReader reader(payload);
    std::string_view portal = reader.ReadCString();
    std::string_view statement = reader.ReadCString();
    if (!reader.ok()) {
      error = std::string(MessageOf(reader.Malformed("Bind")));
      return;
    }
    if (s_.batch_refused_) return Add(*s_.batch_link_, message);
    Prepared prepared = Find(s_.statements_, statement);
    if (!Refresh(prepared)) return;
    if (BatchMismatch(prepared.server)) return;
    if (prepared.plan) {
      // Sampled at Bind, so that only sampled executions copy their Bind.
      if (Sampled(prepared.plan)) prepared.bind = std::make_shared<const std::string>(message);
      s_.portals_[std::string(portal)] = prepared;
    } else {
      s_.portals_.erase(ToAbsl(portal));
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

  void OnExecute(std::string_view message, std::string_view payload) {
    protocol::MessageReader reader(payload);
    std::string_view portal = reader.ReadCString();
    if (!reader.ok()) {
      error = std::string(MessageOf(reader.Malformed("Execute")));
      return;
    }
    if (s_.batch_refused_) return Add(*s_.batch_link_, message);
    Prepared prepared = Find(s_.portals_, portal);
    if (BatchMismatch(prepared.server)) return;
    s_.copy_link_ = prepared.server;
    if (!prepared.plan) {
      NoteUnit(prepared.server, false, nullptr);
      return AddToBatch(prepared.server, message);
    }
    const routing::Plan& plan = *prepared.plan;
    plan.Count();
    if (auto refusal = SecondWriter(plan, prepared.server)) {
      return Refuse(prepared.server, *refusal, false);
    }
    if (auto refusal = ControlAfterMirroredWrite(plan)) {
      return Refuse(prepared.server, *refusal, false);
    }
    // A write mirrored across servers hands its rows over as its result
    // (pgshift's columns): under a row limit (pgjdbc sends 1 for a statement
    // without one) all but the first would stay unmirrored. Without a
    // RETURNING of the client's the limit changes nothing it sees.
    std::string unlimited;
    if (plan.mirrors_remotely) {
      auto execute = protocol::Execute::Decode(payload);
      if (execute.ok() && execute->max_rows != 0) {
        if (plan.shapes.empty() || !plan.shapes[0].no_rows) {
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
    if (prepared.bind) capture = Shadow(prepared.plan, prepared.bind);
    if (plan.transaction_control && two_servers()) {
      Target(prepared.server).on_other_link_first = plan.sql;
    }
    MarkStep(prepared.server, plan, false);
    NoteUnit(prepared.server, false, prepared.plan, std::move(capture));
    if (unlimited.empty()) {
      AddToBatch(prepared.server, message);
    } else {
      StartBatch(prepared.server);
      AddOwned(prepared.server, std::move(unlimited));
    }
    if (plan.transaction_control) Seal();
  }

  void OnDescribeOrClose(char type, std::string_view message, std::string_view payload) {
    protocol::Target target = protocol::Target::kStatement;
    std::string name;
    if (!protocol::ReadTargetAndName(payload, target, name)) {
      error = StrCat("malformed ", protocol::FrontendMessageName(type), " message");
      return;
    }
    if (s_.batch_refused_) return Add(*s_.batch_link_, message);
    auto& map = target == protocol::Target::kStatement ? s_.statements_ : s_.portals_;
    Prepared prepared = Find(map, name);
    if (type == frontend::kDescribe && target == protocol::Target::kStatement && !Refresh(prepared)) {
      return;
    }
    if (BatchMismatch(prepared.server)) return;
    if (type == frontend::kClose) {
      map.erase(name);
    } else {
      NoteUnit(prepared.server, true, prepared.plan);
    }
    AddToBatch(prepared.server, message);
  }

  Session& s_;
  bool routing_ = false;
  BackendId last_target_ = BackendId::kOld;
};

Session::Session(Server& server, tcp::socket socket, uint64_t id, ShadowRunner* shadow)
    : server_(server), id_(id), shadow_(shadow), settings_(server.settings()),
      client_(std::move(socket)),
      client_buffer_(4096) {
  links_[0].server = BackendId::kOld;
  links_[0].name = "old";
  links_[1].server = BackendId::kNew;
  links_[1].name = "new";
  error_code ec;
  auto remote = client_.socket().remote_endpoint(ec);
  client_address_ = ec ? "unknown" : StrCat(remote.address().to_string(), ":", remote.port());
}

Session::~Session() {
  if (cancel_key_) server_.cancels().Remove({cancel_key_->first, cancel_key_->second});
  if (admitted_) server_.ReleaseClient();
}

awaitable<void> Session::Run() {
  ClientLogin login_client(client_, client_buffer_, client_address_, server_.stats());
  auto start = co_await login_client.ReadStartup(server_.client_tls());
  if (!start) co_return;
  if (auto* cancel = std::get_if<protocol::CancelRequest>(&*start)) {
    co_await ForwardCancel(*cancel);
    client_.Close();
    co_return;
  }
  startup_ = std::get<protocol::StartupMessage>(*start);
  user_ = std::string(startup_.Get("user"));
  database_ = std::string(startup_.Get("database"));
  if (database_.empty()) database_ = user_;
  if (user_.empty()) {
    co_await login_client.Fail(Fatal(sqlstate::kInvalidAuthorization,
                                     "no PostgreSQL user name specified in startup packet"));
    co_return;
  }
  admitted_ = server_.TryAdmitClient();
  if (!admitted_) {
    LogEvent(LogLevel::kWarning, "client_refused",
             {{"client", client_address_}, {"user", user_},
              {"reason", StrCat("max_clients (", config().proxy.max_clients, ") reached")}});
    co_await login_client.Fail(
        Fatal(sqlstate::kTooManyConnections, "sorry, too many clients already"));
    co_return;
  }
  if (!co_await login_client.Authenticate(*settings_, user_)) co_return;

  // Built as a named local: GCC 12 miscompiles aggregate temporaries inside
  // a co_await expression.
  const routing::UserConfig* entry = config().FindUser(user_);
  BackendLoginParams params{
      .backend_name = "old",
      .backend = config().old_backend,
      .client_startup = startup_,
      .fallback_password = entry ? std::string_view(entry->password) : std::string_view(),
      .tls_context = server_.backend_tls(),
      .connect_timeout_s = config().proxy.connect_timeout_s,
  };
  BackendLoginResult result = co_await LoginToBackend(params);
  if (auto* error = std::get_if<ErrorFields>(&result)) {
    server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
    co_await login_client.Fail(*error);
    co_return;
  }
  BackendLogin& login = std::get<BackendLogin>(result);
  Link& old = link(BackendId::kOld);
  old.Connect(std::move(login.stream), login.key.process_id);
  cancel_key_ = {login.key.process_id, login.key.secret_key};
  server_.cancels().Add({login.key.process_id, login.key.secret_key},
                        CancelTarget{config().old_backend.endpoint, login.key.process_id,
                                     login.key.secret_key});

  std::string hello;
  protocol::Authentication{}.Encode(hello);  // AuthenticationOk
  hello.append(login.greeting);
  lifecycle_ = Lifecycle::kRelaying;
  co_await SendToClient(hello);
  if (!client_writable_) co_return;
  backend_pid_ = login.key.process_id;
  tls_ = client_.tls();
  described_.store(true, std::memory_order_release);
  PublishState();
  server_.stats().sessions_total.fetch_add(1, std::memory_order_relaxed);
  LogEvent(LogLevel::kInfo, "session_start",
           {{"session", StrCat(id_)}, {"client", client_address_}, {"user", user_},
            {"database", database_}, {"backend_pid", StrCat(login.key.process_id)},
            {"tls", client_.tls() ? "on" : "off"}});
  co_await Relay();
  LogEvent(LogLevel::kInfo, "session_end",
           {{"session", StrCat(id_)}, {"client", client_address_},
            {"reason", final_error_ ? final_error_->message() : "client closed the connection"}});
}

awaitable<void> Session::ForwardCancel(const protocol::CancelRequest& request) {
  auto targets = server_.cancels().Find({request.process_id, request.secret_key});
  if (targets.empty()) {
    LogEvent(LogLevel::kInfo, "cancel_ignored",
             {{"client", client_address_}, {"reason", "no session has this cancel key"}});
    co_return;
  }
  auto executor = co_await asio::this_coro::executor;
  for (const CancelTarget& target : targets) {
    error_code ec;
    tcp::resolver resolver(executor);
    auto endpoints = co_await resolver.async_resolve(
        target.endpoint.host, std::to_string(target.endpoint.port), WithError(ec));
    tcp::socket socket(executor);
    if (!ec) co_await asio::async_connect(socket, endpoints, WithError(ec));
    std::string packet;
    protocol::CancelRequest{target.process_id, target.secret_key}.Encode(packet);
    if (!ec) co_await asio::async_write(socket, asio::buffer(packet), WithError(ec));
    LogEvent(ec ? LogLevel::kWarning : LogLevel::kInfo, "cancel_forwarded",
             {{"client", client_address_}, {"backend_pid", StrCat(target.process_id)},
              {"result", ec ? ec.message() : "sent"}});
  }
}

awaitable<void> Session::Relay() {
  auto self = shared_from_this();
  auto executor = co_await asio::this_coro::executor;
  wake_ = std::make_unique<asio::steady_timer>(executor);
  StartPump(link(BackendId::kOld));
  co_await PumpClientToBackend();
  // The pumps end once End() has closed the links.
  while (links_[0].pump_running || links_[1].pump_running) {
    wake_->expires_at(asio::steady_timer::time_point::max());
    error_code ignored;
    co_await wake_->async_wait(WithError(ignored));
  }
  if (final_error_ && client_writable_ && !client_mid_message_ && client_.is_open()) {
    std::string out;
    protocol::ErrorResponse(*final_error_).Encode(out);
    co_await SendToClient(out);
  }
  client_.Close();
}

void Session::StartPump(Link& l) {
  l.pump_running = true;
  auto self = shared_from_this();
  asio::co_spawn(
      client_.socket().get_executor(),
      [self, &l]() -> awaitable<void> {
        co_await self->PumpBackendToClient(l);
        l.pump_running = false;
        // Nothing more will answer these.
        for (ExpectedReply& c : l.replies) {
          if (c.internal == nullptr) continue;
          c.internal->done = true;
          if (!c.internal->error) {
            c.internal->error = Fatal(sqlstate::kConnectionFailure,
                                      StrCat("pgshift: lost the connection to backend ", l.name));
          }
        }
        l.replies.clear();
        l.forward_pending = 0;
        self->Wake();
      },
      asio::detached);
}

void Session::Wake() {
  if (wake_) wake_->cancel();
}

awaitable<void> Session::PumpClientToBackend() {
  ClientToBackend handler(*this);
  protocol::FrameDecoder decoder(protocol::kFrontendTypes, config().proxy.max_message_size);
  while (!ended()) {
    error_code ec;
    size_t n = co_await client_.ReadSome(client_buffer_.PrepareRead(), ec);
    if (ec) {
      if (!ended() && client_sent_partial_) {
        LogEvent(LogLevel::kInfo, "client_lost_mid_message",
                 {{"session", StrCat(id_)}, {"client", client_address_}});
      }
      client_writable_ = client_writable_ && ec == asio::error::operation_aborted;
      End(std::nullopt);
      break;
    }
    client_buffer_.Commit(n);
    // Between transactions, what the client sends next is planned under
    // the newest settings.
    AfterTransaction();
    handler.Reset();
    auto used = decoder.Decode(client_buffer_.data(), handler);
    if (!used.ok() || !handler.error.empty()) {
      std::string why = used.ok() ? handler.error : std::string(MessageOf(used.status()));
      server_.stats().protocol_violations.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kWarning, "protocol_violation",
               {{"session", StrCat(id_)}, {"client", client_address_}, {"side", "client"},
                {"reason", why}});
      End(Fatal(sqlstate::kProtocolViolation, StrCat("pgshift: ", why)));
      break;
    }
    client_sent_partial_ = decoder.streaming();
    for (size_t i = 0; i < handler.count && !ended(); ++i) {
      if (!co_await RunStep(handler.steps[i])) break;
    }
    if (ended()) break;
    client_buffer_.Consume(*used);
    PublishState();
    if (handler.terminated) {
      End(std::nullopt);
      break;
    }
  }
}

awaitable<bool> Session::RunStep(Step& step) {
  if (step.skip_if_failed != 0) {
    // Once the part before has answered, so that its outcome is known.
    Link& before = link(routing::OtherBackend(step.target));
    co_await WaitUntil([&before] { return before.forward_pending == 0; });
    if (ended()) co_return false;
    if (failed_group_ == step.skip_if_failed) co_return true;
  }
  // New is connected when first needed, and again after it was lost, once
  // the client is outside the transaction that lost it.
  const Link& fresh = link(BackendId::kNew);
  if (step.target == BackendId::kNew &&
      (fresh.absent() || (fresh.broken() && transaction_status_ == TransactionStatus::kIdle))) {
    if (co_await ConnectNew()) co_return false;
  }
  if (link(step.target).broken()) {
    End(Fatal(sqlstate::kConnectionFailure,
              StrCat("pgshift: lost the connection to backend ", link(step.target).name)));
    co_return false;
  }
  Link& target = link(step.target);
  Link& other = link(routing::OtherBackend(step.target));
  if (!step.close_elsewhere.empty() && other.ready()) {
    co_await RunInternalMessages(other, std::move(step.close_elsewhere), nullptr);
  }
  if (!step.reprepare.empty()) {
    std::optional<ErrorFields> failed =
        co_await RunInternalMessages(target, std::move(step.reprepare), nullptr);
    if (failed) {
      LogEvent(LogLevel::kWarning, "statement_prepare_failed",
               {{"session", StrCat(id_)}, {"backend", target.name}, {"reason", failed->message()}});
    }
  }
  const bool mirrored_commit = step.transaction == routing::TransactionKind::kCommit &&
                               other.mirrored &&
                               other.transaction_status != TransactionStatus::kIdle;
  if (step.transaction == routing::TransactionKind::kSavepoint &&
      transaction_status_ != TransactionStatus::kIdle &&
      settings_->router->mirrors_across_servers() &&
      other.transaction_status == TransactionStatus::kIdle) {
    // Savepoints exist on both servers, so that a mirror that joins later
    // can roll back to them.
    if (other.server == BackendId::kNew && !other.ready()) {
      co_await ConnectNew(false);
    }
    if (other.ready()) {
      if (SettingsBehind(other)) co_await SyncSettings(other);
      co_await RunInternal(other, "BEGIN");
      if (SettingsBehind(other)) co_await SyncSettings(other);
    }
  }
  if (other.ready()) {
    // One server answers at a time, so replies reach the client in order.
    co_await WaitUntil([&other] { return other.forward_pending == 0 && !other.HasInternal(); });
    if (ended()) co_return false;
    if (SettingsBehind(target)) co_await SyncSettings(target);
    // The client is in a transaction this server has not joined yet.
    if (transaction_status_ != TransactionStatus::kIdle &&
        target.transaction_status == TransactionStatus::kIdle && target.forward_pending == 0 &&
        !target.in_batch && !target.HasInternal()) {
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
                 {{"session", StrCat(id_)}, {"backend", other.name},
                  {"statement", step.on_other_link_first}, {"reason", failed->message()}});
      }
    }
    if (SettingsBehind(target)) co_await SyncSettings(target);
    if (ended()) co_return false;
  }
  // Mirroring across servers: what must happen before the step, and the
  // batch that follows its cycles.
  std::shared_ptr<MirrorBatch> batch;
  bool send = true;
  if (step.mirrored || mirrored_commit) {
    send = co_await BeforeMirroredStep(step, batch);
    if (ended()) co_return false;
    if (batch) settling_ = true;  // until SettleMirror: the transaction is not over
  }
  std::vector<std::shared_ptr<MirrorBatch>> closed;  // cycles this step closes that have one
  for (ExpectedReply& reply : step.replies) {
    if (std::shared_ptr<MirrorBatch> b = Expect(target, std::move(reply), batch)) {
      closed.push_back(std::move(b));
    }
  }
  if (!send) {
    // The COMMIT fails in its stand-in's words; the rest of its batch, if
    // any, is skipped by the server.
    step.bytes.clear();
    step.bytes.AddOwned(std::move(step.fail_with));
  }
  if (!step.bytes.empty()) {
    error_code ec;
    co_await target.stream->Write(step.bytes.buffers(), ec);
    if (ec) {
      if (!ended()) {
        End(Fatal(sqlstate::kConnectionFailure,
                  StrCat("pgshift: lost the connection to backend ", target.name, ": ", ec.message())));
      }
      co_return false;
    }
  }
  if (step.copy_in) {
    // Its reply completes only after the client's data, read later.
    awaiting_copy_.insert(awaiting_copy_.end(), closed.begin(), closed.end());
    co_return true;
  }
  if (step.ends_copy) {
    closed.insert(closed.begin(), awaiting_copy_.begin(), awaiting_copy_.end());
    awaiting_copy_.clear();
  }
  for (const std::shared_ptr<MirrorBatch>& b : closed) {
    co_await SettleMirror(target, *b);
    if (ended()) co_return false;
  }
  co_return true;
}

std::shared_ptr<MirrorBatch> Session::Expect(Link& target, ExpectedReply reply,
                                             const std::shared_ptr<MirrorBatch>& batch) {
  ExpectedReply* queued = nullptr;
  bool added_units = true;
  if (reply.joins_open && !target.replies.empty() && target.replies.back().open) {
    queued = &target.replies.back();
    added_units = !reply.units.empty();
    for (ReplyUnit& unit : reply.units) queued->units.push_back(std::move(unit));
    queued->open = reply.open;
  } else {
    queued = &target.replies.emplace_back(std::move(reply));
  }
  if (added_units && (batch || queued->mirror)) {
    // A place in the batch for each mirrored result. (A batch spanning
    // steps keeps the one its first step attached.)
    if (!queued->mirror) queued->mirror = batch;
    MirrorBatch& to = *queued->mirror;
    for (ReplyUnit& unit : queued->units) {
      if (unit.describe || !unit.shape.remote || unit.mirror_index >= 0) continue;
      unit.mirror_index = static_cast<int32_t>(to.rows.size());
      to.rows.push_back({unit.shape.remote, "[", 0, {}});
    }
  }
  if (queued->open) return nullptr;
  ++target.forward_pending;
  NoteSent();
  return queued->mirror;
}

awaitable<std::optional<ErrorFields>> Session::ConnectNew(bool fatal) {
  const routing::UserConfig* entry = config().FindUser(user_);
  BackendLoginParams params{
      .backend_name = "new",
      .backend = *config().new_backend,
      .client_startup = startup_,
      .fallback_password = entry ? std::string_view(entry->password) : std::string_view(),
      .tls_context = server_.backend_tls(),
      .connect_timeout_s = config().proxy.connect_timeout_s,
  };
  BackendLoginResult result = co_await LoginToBackend(params);
  if (auto* error = std::get_if<ErrorFields>(&result)) {
    server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
    LogEvent(LogLevel::kWarning, "backend_connect_failed",
             {{"session", StrCat(id_)}, {"backend", "new"}, {"reason", error->message()}});
    ErrorFields failed = Fatal(sqlstate::kConnectionFailure,
                               StrCat("pgshift: cannot connect to backend new: ", error->message()));
    if (fatal) End(failed);
    co_return failed;
  }
  BackendLogin& login = std::get<BackendLogin>(result);
  Link& fresh = link(BackendId::kNew);
  // A mirror link lost earlier is replaced once its pump has stopped.
  co_await WaitUntil([&fresh] { return !fresh.pump_running; });
  fresh.Connect(std::move(login.stream), login.key.process_id);
  if (cancel_key_) {
    server_.cancels().Add({cancel_key_->first, cancel_key_->second},
                          CancelTarget{config().new_backend->endpoint, login.key.process_id,
                                       login.key.secret_key});
  }
  LogEvent(LogLevel::kInfo, "backend_opened",
           {{"session", StrCat(id_)}, {"backend", "new"},
            {"backend_pid", StrCat(login.key.process_id)}});
  if (ended()) {
    fresh.stream->Close();
    co_return Fatal(sqlstate::kConnectionFailure, "session ended");
  }
  StartPump(fresh);
  co_return std::nullopt;
}

void Session::AppendInternal(std::string& out, std::string_view sql,
                             std::optional<std::string> param, const std::string* prepared) {
  static constexpr const char* kOnce = "pgshift_once";
  static constexpr const char* kPortal = "pgshift_portal";
  if (prepared == nullptr) {
    protocol::Close{protocol::Target::kStatement, kOnce}.Encode(out);
    protocol::Parse{kOnce, std::string(sql), {}}.Encode(out);
  }
  // A portal left by a batch that failed before closing it goes first.
  protocol::Close{protocol::Target::kPortal, kPortal}.Encode(out);
  protocol::Bind bind;
  bind.portal = kPortal;
  bind.statement = prepared != nullptr ? *prepared : kOnce;
  if (param) bind.parameters.push_back(std::move(param));
  bind.Encode(out);
  protocol::Execute{kPortal, 0}.Encode(out);
  protocol::Close{protocol::Target::kPortal, kPortal}.Encode(out);
}

std::string Session::InternalBatch(std::initializer_list<std::string_view> statements) {
  std::string out;
  for (std::string_view sql : statements) AppendInternal(out, sql);
  protocol::Sync{}.Encode(out);
  return out;
}

awaitable<std::optional<ErrorFields>> Session::RunInternal(Link& l, std::string_view sql,
                                                           std::string* value) {
  std::string batch = InternalBatch({sql});
  co_return co_await RunInternalMessages(l, std::move(batch), value);
}

awaitable<std::optional<ErrorFields>> Session::RunInternalMessages(Link& l, std::string message,
                                                                   std::string* value) {
  std::shared_ptr<InternalReply> reply = co_await SendInternal(l, std::move(message));
  co_return co_await AwaitInternal(reply, value);
}

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

awaitable<std::optional<ErrorFields>> Session::AwaitInternal(
    const std::shared_ptr<InternalReply>& reply, std::string* value) {
  co_await WaitUntil([&reply] { return reply->done; });
  if (!reply->done) co_return Fatal(sqlstate::kConnectionFailure, "session ended");
  if (value != nullptr && reply->value) *value = *reply->value;
  co_return reply->error;
}

awaitable<void> Session::PumpBackendToClient(Link& l) {
  ReplyRelay handler(l, refusals_, shadow_, *this);
  protocol::FrameDecoder decoder(protocol::kBackendTypes, config().proxy.max_message_size);
  while (!ended()) {
    error_code ec;
    size_t n = co_await l.stream->ReadSome(l.buffer.PrepareRead(), ec);
    if (ec) {
      // A backend that ends with a FATAL error has told the client why.
      bool explained = l.last_type == backend::kErrorResponse && !decoder.streaming();
      if (!ended()) {
        server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
        LogEvent(LogLevel::kWarning, "backend_lost",
                 {{"session", StrCat(id_)}, {"backend", l.name}, {"reason", ec.message()}});
      }
      if (!ended() && l.server == BackendId::kNew && l.OnlyInternal()) {
        // New held only pgshift's own work (a mirror): the session goes on,
        // and the mirror's policy decides what its loss means.
        l.Break();
        break;
      }
      End(explained ? std::nullopt
                    : std::optional(Fatal(sqlstate::kConnectionFailure,
                                          StrCat("pgshift: lost the connection to backend ",
                                                 l.name, ": ", ec.message()))));
      break;
    }
    l.buffer.Commit(n);
    handler.Reset();
    auto used = decoder.Decode(l.buffer.data(), handler);
    if (!used.ok() || !handler.error.empty()) {
      std::string why = used.ok() ? handler.error : std::string(MessageOf(used.status()));
      server_.stats().protocol_violations.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kError, "protocol_violation",
               {{"session", StrCat(id_)}, {"side", StrCat("backend ", l.name)}, {"reason", why}});
      End(Fatal(sqlstate::kProtocolViolation,
                StrCat("pgshift: backend ", l.name, " sent an invalid message: ", why)));
      break;
    }
    if (!handler.out.empty()) {
      co_await client_.Write(handler.out.buffers(), ec);
      if (ec) {
        client_writable_ = false;
        End(std::nullopt);
        break;
      }
    }
    client_mid_message_ = decoder.streaming();
    l.buffer.Consume(*used);
    if (handler.answered > 0) {
      // Counted only once written: the other server may answer next.
      l.forward_pending -= std::min(l.forward_pending, handler.answered);
      ReconcileSentTransaction();
      AfterTransaction();
      Wake();
    }
    PublishState();
    if (lifecycle_ == Lifecycle::kDraining && IdleOutsideTransaction()) End(AdminShutdown());
  }
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
               {{"session", StrCat(id_)}, {"backend", l.name}, {"statement", sql},
                {"reason", failed->message()}});
    }
  }
}

void Session::AfterTransaction() {
  Link& old = link(BackendId::kOld);
  Link& fresh = link(BackendId::kNew);
  for (const Link* l : {&old, &fresh}) {
    if (l->broken()) continue;  // its transaction is gone with it
    if (l->transaction_status != TransactionStatus::kIdle || l->forward_pending != 0 ||
        l->HasInternal())
      return;
  }
  if (transaction_status_ != TransactionStatus::kIdle || settling_ || PendingResults() > 0) return;
  old.written = fresh.written = false;
  old.mirrored = fresh.mirrored = false;
  client_settings_.EndTransaction(commit_requested_);
  commit_requested_ = false;
  fresh.transaction_settings = 0;
  written_tables_.clear();
  mirrored_keys_.clear();
  authoritative_xid_.clear();
  fail_on_mirror_error_ = false;
  // Between transactions: the next one runs under the newest settings.
  if (server_.settings_generation() != settings_->generation) {
    settings_ = server_.settings();
  }
}

bool Session::IdleOutsideTransaction() const {
  return PendingResults() == 0 && transaction_status_ == TransactionStatus::kIdle &&
         !client_sent_partial_ && !client_mid_message_ && !links_[0].HasInternal() &&
         !links_[1].HasInternal();
}

void Session::OnInternalAnswered() { Wake(); }

void Session::OnClientAnswered(const ExpectedReply& reply, TransactionStatus status,
                               bool forwarded) {
  NoteAnswered();
  if (reply.mirror) Wake();  // the session settles the mirror before the client goes on
  if (!forwarded) return;
  if (reply.failed) failed_group_ = reply.group;
  transaction_status_ = status;
}

void Session::NoteSent() { query_timer_.Sent(QueryTimer::Clock::now()); }

void Session::ReconcileSentTransaction() {
  if (links_[0].forward_pending == 0 && links_[1].forward_pending == 0 && !batch_link_ &&
      !settling_) {
    sent_transaction_ = SentTransaction::kAsReported;
  }
}

void Session::NoteAnswered() {
  if (auto took = query_timer_.Answered(QueryTimer::Clock::now())) {
    server_.stats().ObserveQuery(*took);
  }
}

void Session::PublishState() {
  ClientState state = ClientState::kActive;
  if (PendingResults() == 0) {
    switch (transaction_status_) {
      case TransactionStatus::kIdle: state = ClientState::kIdle; break;
      case TransactionStatus::kInBlock: state = ClientState::kInTransaction; break;
      case TransactionStatus::kFailed: state = ClientState::kFailedTransaction; break;
    }
  }
  published_state_.store(state, std::memory_order_relaxed);
  published_queries_.store(queries_, std::memory_order_relaxed);
}

ClientRow Session::Describe() const {
  ClientRow row;
  row.session = id_;
  row.client = client_address_;
  row.connected_at = connected_at_;
  if (!described_.load(std::memory_order_acquire)) {
    row.state = "starting";
    return row;
  }
  row.user = user_;
  row.database = database_;
  row.backend_pid = backend_pid_;
  row.tls = tls_;
  row.queries = published_queries_.load(std::memory_order_relaxed);
  switch (published_state_.load(std::memory_order_relaxed)) {
    case ClientState::kStarting: row.state = "starting"; break;
    case ClientState::kActive: row.state = "active"; break;
    case ClientState::kIdle: row.state = "idle"; break;
    case ClientState::kInTransaction: row.state = "idle in transaction"; break;
    case ClientState::kFailedTransaction: row.state = "idle in transaction (aborted)"; break;
  }
  return row;
}

void Session::End(std::optional<ErrorFields> final_error) {
  if (ended()) return;
  lifecycle_ = Lifecycle::kEnded;
  final_error_ = std::move(final_error);
  client_.Cancel();
  for (Link& l : links_) {
    if (l.stream) l.stream->Close();
  }
  Wake();
}

void Session::BeginShutdown() {
  switch (lifecycle_) {
    case Lifecycle::kLoggingIn: client_.Close(); return;
    case Lifecycle::kRelaying: lifecycle_ = Lifecycle::kDraining; break;
    case Lifecycle::kDraining: break;
    case Lifecycle::kEnded: return;
  }
  if (IdleOutsideTransaction()) End(AdminShutdown());
}

void Session::Abort() {
  if (lifecycle_ == Lifecycle::kLoggingIn) {
    client_.Close();
    return;
  }
  End(AdminShutdown());
}

awaitable<void> Session::SendToClient(std::string_view bytes) {
  error_code ec;
  co_await client_.Write(asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec) client_writable_ = false;
}

}  // namespace pgshift::proxy
