#include "common/strings.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "proxy/log.h"
#include "proxy/session/planner.h"
#include "routing/sql_analysis.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
namespace frontend = protocol::frontend;
namespace sqlstate = protocol::sqlstate;
using routing::BackendId;
}  // namespace

bool Planner::RouteSqlPrepared(std::string_view message, std::string_view sql) {
  bool may = false;
  for (std::string_view word : {"execute", "deallocate", "prepare", "discard"}) {
    may = may || ContainsIgnoreCase(sql, word);
  }
  std::optional<routing::PreparedStatementUse> use;
  if (may) use = routing::PreparedStatementUseOf(sql);
  if (!use) return false;
  using Use = routing::PreparedStatementUse;
  auto& prepared = client_.sql_prepared;
  // DEALLOCATE drops a statement the client prepared by Parse too.
  if (use->kind == Use::kDeallocate && use->name.empty()) {
    client_.statements.EraseIf([](const auto& entry) { return !entry.first.empty(); });
  } else if (use->kind == Use::kDeallocate && prepared.find(use->name) == prepared.end()) {
    // It lives where its Parse went, which may be new.
    auto it = client_.statements.find(use->name);
    if (it != client_.statements.end()) {
      const BackendId server = it->second.server;
      client_.statements.erase(it);
      OpenStep(server);
      ForwardQuery(server, message);
      return true;
    }
  }
  if (use->kind == Use::kPrepare) {
    prepared.erase(use->name);  // a plan, if any, records it again
    return false;
  }
  if (use->kind == Use::kDeallocate && use->name.empty()) return DeallocateAll(message);
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
  if (p.generation != ctx_.settings->generation) {
    std::string name = use->name;
    if (!Reprepare(name, p)) return true;
    stepped = true;
    it = prepared.find(name);
    if (it == prepared.end()) return false;  // now as any other statement
  }
  const SqlPrepared& now = it->second;
  if (!stepped) OpenStep(now.server);
  if (auto refusal = Admit(*now.plan, now.generation)) {
    Refuse(now.server, *refusal, true);
    Seal();
    return true;
  }
  if (auto refusal = SecondWriter(*now.plan, now.server)) {
    Refuse(routing::OtherBackend(now.server), *refusal, true);
    Seal();
    return true;
  }
  NoteWrite(*now.plan, now.server);
  ForwardQuery(now.server, message);
  return true;
}

// DEALLOCATE ALL runs on old, and drops on new what was prepared there.
bool Planner::DeallocateAll(std::string_view message) {
  std::string on_new;
  for (const auto& [name, p] : client_.sql_prepared) {
    if (p.server == BackendId::kNew) {
      on_new = StrCat(on_new, "DEALLOCATE ", routing::QuoteIdent(name), ";");
    }
  }
  client_.sql_prepared.clear();
  if (on_new.empty()) return false;
  Step& step = NewStep(BackendId::kOld);
  step.opens = true;
  protocol::Query{on_new}.Encode(step.close_elsewhere);
  ForwardQuery(BackendId::kOld, message);
  return true;
}

bool Planner::Reprepare(const std::string& name, SqlPrepared& p) {
  routing::PlanPtr plan = PlanFor(p.sql);
  BackendId target = plan ? TargetOf(plan) : BackendId::kOld;
  if (plan && plan->refusal) {
    client_.sql_prepared.erase(name);
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
             {{"session", StrCat(ctx_.session_id)},
              {"statement", name},
              {"server", routing::BackendName(target)}});
  }
  if (!plan) {
    // It no longer touches a configured table: old, as any other.
    client_.sql_prepared.erase(name);
    return true;
  }
  p = SqlPrepared{target, plan, p.sql, ctx_.settings->generation};
  return true;
}

bool Planner::SendPrepared(BackendId target, const routing::ParameterizedText& p,
                           ExpectedReply& reply) {
  static constexpr size_t kMaxStatements = 256;  // per connection; then the least used goes
  // Longer texts are sent as they come: 256 of them stay within 16 MB.
  static constexpr size_t kMaxStatementBytes = 64 * 1024;
  if (p.sql.size() > kMaxStatementBytes) return false;
  Link& on = link(target);
  // In an aborted transaction the Parse would fail as the Query does,
  // and in the client's open batch a Sync of pgshift's would end it.
  if (ctx_.transaction.reported == TransactionStatus::kFailed || batch_link_) {
    return false;
  }
  std::string key = p.sql;
  key.push_back('\0');
  for (int32_t type : p.types) key += StrCat(type, " ");
  std::string messages;
  std::string name;
  if (auto it = on.statements.find(key); it != on.statements.end()) {
    if (!it->second.parsed) return false;
    name = it->second.name;
    it->second.last_used = ++on.statement_uses;
  } else {
    if (on.statements.size() >= kMaxStatements && !CloseLeastUsed(on, messages)) {
      return false;
    }
    name = on.NameStatement();
    protocol::Parse{name, p.sql, p.types}.Encode(messages);
    on.statements.emplace(key, Link::ServerStatement{name, false, ++on.statement_uses});
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

bool Planner::CloseLeastUsed(Link& link, std::string& messages) {
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

void Planner::ForgetStatementsIfDeallocated(std::string_view sql) {
  Link& old = link(BackendId::kOld);
  if (old.statements.empty()) return;
  if (ContainsIgnoreCase(sql, "discard") || ContainsIgnoreCase(sql, "deallocate")) {
    old.statements.clear();
  }
}

}  // namespace pgshift::proxy
