// The planner's part in coordination (SPEC section 9): what the session
// holds while a flip is fenced, and which statements the gate refuses.
#include <algorithm>

#include "common/strings.h"
#include "protocol/message_type.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/wire.h"
#include "proxy/session/planner.h"
#include "routing/mention_filter.h"
#include "routing/phase.h"

namespace pgshift::proxy {

namespace {

namespace frontend = protocol::frontend;
namespace sqlstate = protocol::sqlstate;

bool Touches(const routing::PlanPtr& plan, const std::vector<std::string>& tables) {
  if (!plan) return false;
  for (const auto* list : {&plan->reads, &plan->writes_to}) {
    for (const routing::TableCounters* t : *list) {
      if (std::find(tables.begin(), tables.end(), t->table) != tables.end()) return true;
    }
  }
  return false;
}

}  // namespace

void Planner::EndTransaction() {
  client_.EndTransaction();
  if (!steps_running_) LeaveGate();
}

bool Planner::EnteredChangedSince(uint64_t generation) const {
  if (ctx_.gate == nullptr) return false;
  return std::any_of(entered_.begin(), entered_.end(), [&](const std::string& table) {
    return ctx_.gate->ChangedSince(table, generation);
  });
}

void Planner::LeaveGate() {
  if (ctx_.gate == nullptr) return;
  for (const std::string& table : entered_) ctx_.gate->Leave(table, ctx_.session_id);
  entered_.clear();
}

bool Planner::MayTouchFenced(std::string_view bytes) const {
  if (ctx_.gate == nullptr || !ctx_.gate->AnyFenced()) return false;
  std::vector<std::string> fenced = ctx_.gate->FencedTables();
  // In flight on one of the flip's tables, the transaction is what the flip
  // waits for: held on another of them, it would hold the flip up until
  // cutover_timeout (the flip cannot be acknowledged meanwhile, so it may go
  // on under the old phases).
  for (const std::string& table : fenced) {
    if (std::find(entered_.begin(), entered_.end(), table) != entered_.end()) return false;
  }
  if (fenced.empty()) return false;
  const routing::TableMentionFilter mentions(config(), fenced);
  while (bytes.size() >= protocol::kHeaderSize) {
    auto size = protocol::CompleteMessageSize(bytes, protocol::kFrontendTypes,
                                              config().proxy.max_message_size);
    if (!size.ok() || *size == 0) break;
    std::string_view payload = bytes.substr(protocol::kHeaderSize, *size - protocol::kHeaderSize);
    protocol::MessageReader reader(payload);
    switch (bytes[0]) {
      case frontend::kQuery: {
        auto query = protocol::Query::Decode(payload);
        if (query.ok() && mentions.MayMention(query->sql)) return true;
        break;
      }
      case frontend::kParse: {
        auto parse = protocol::Parse::Decode(payload);
        if (parse.ok() && mentions.MayMention(parse->sql)) return true;
        break;
      }
      case frontend::kBind: {
        reader.ReadCString();  // the portal
        std::string_view statement = reader.ReadCString();
        if (reader.ok() &&
            Touches(ClientStatements::Find(client_.statements, statement).plan, fenced)) {
          return true;
        }
        break;
      }
      case frontend::kExecute: {
        std::string_view portal = reader.ReadCString();
        if (reader.ok() && Touches(ClientStatements::Find(client_.portals, portal).plan, fenced)) {
          return true;
        }
        break;
      }
      default: break;
    }
    bytes.remove_prefix(*size);
  }
  return false;
}

std::optional<routing::Refusal> Planner::Admit(const routing::Plan& plan, uint64_t planned_under) {
  if (ctx_.gate == nullptr) return std::nullopt;
  std::vector<std::string> tables;
  std::vector<routing::TableCounters*> counters;
  for (const auto* list : {&plan.reads, &plan.writes_to}) {
    for (routing::TableCounters* t : *list) {
      if (std::find(tables.begin(), tables.end(), t->table) == tables.end()) {
        tables.push_back(t->table);
        counters.push_back(t);
      }
    }
  }
  // A commit makes what the transaction wrote under its phases stand.
  if (plan.transaction == routing::TransactionKind::kCommit ||
      plan.transaction == routing::TransactionKind::kPrepare) {
    for (const std::string& t : entered_) {
      if (std::find(tables.begin(), tables.end(), t) == tables.end()) tables.push_back(t);
    }
  }
  std::optional<routing::Refusal> refusal = Admitted(tables, planned_under);
  if (refusal) {
    for (routing::TableCounters* t : counters) t->refused.fetch_add(1, std::memory_order_relaxed);
  }
  return refusal;
}

std::optional<routing::Refusal> Planner::Admitted(const std::vector<std::string>& tables,
                                                  uint64_t planned_under) {
  routing::CoordinationGate& gate = *ctx_.gate;
  const uint64_t generation = planned_under;
  const uint64_t epoch = gate.lease_epoch();  // before the lease is looked at
  for (const std::string& table : tables) {
    routing::Phase phase = routing::Phase::kOldOnly;
    for (const routing::TableConfig& t : config().tables) {
      if (t.name == table) phase = t.phase;
    }
    if (!gate.synced()) {
      return routing::Refusal{
          std::string(sqlstate::kCannotConnectNow),
          StrCat("pgshift: cannot confirm the migration phase of ", table,
                 ": this instance has not read the phases from the coordinator yet ([coordination] "
                 "in the old database); statements on configured tables wait for it")};
    }
    if (!gate.LeaseValid() && (routing::MirrorsWrites(phase) || gate.Fenced(table))) {
      return routing::Refusal{
          std::string(sqlstate::kCannotConnectNow),
          StrCat("pgshift: cannot confirm the migration phase of ", table, " (",
                 routing::PhaseName(phase),
                 "): this instance could not renew its coordination lease within "
                 "coordination.lease_timeout = ",
                 config().coordination.lease_timeout_s,
                 " s, so another instance may have changed it; statements on tables in mirrored "
                 "phases are refused until the coordinator answers again")};
    }
    const bool entered = std::find(entered_.begin(), entered_.end(), table) != entered_.end();
    if (entered && entered_epoch_ != epoch && routing::MirrorsWrites(phase)) {
      // The phases may have changed while the lease had lapsed, and a flip
      // may have gone on without this instance: what the transaction did
      // before cannot be vouched for.
      return routing::Refusal{
          std::string(sqlstate::kSerializationFailure),
          StrCat("pgshift: this instance's coordination lease lapsed during this transaction on ",
                 table, " (", routing::PhaseName(phase),
                 "), so its migration phase cannot be vouched for; retry the transaction")};
    }
    routing::CoordinationGate::Entry entry = routing::CoordinationGate::Entry::kEntered;
    if (!entered) {
      entry = gate.Enter(table, ctx_.session_id, generation);
      if (entry == routing::CoordinationGate::Entry::kEntered) {
        if (entered_.empty()) entered_epoch_ = epoch;
        entered_.push_back(table);
      }
    } else if (gate.ChangedSince(table, generation)) {
      entry = routing::CoordinationGate::Entry::kStale;
    }
    switch (entry) {
      case routing::CoordinationGate::Entry::kEntered: break;
      case routing::CoordinationGate::Entry::kFlipping:
        return routing::Refusal{
            std::string(sqlstate::kSerializationFailure),
            StrCat("pgshift: table ", table, " is being flipped out of ", routing::PhaseName(phase),
                   " by a coordinated phase change; retry the transaction")};
      case routing::CoordinationGate::Entry::kStale:
        return routing::Refusal{std::string(sqlstate::kSerializationFailure),
                                StrCat("pgshift: the migration phase of table ", table,
                                       " was changed by a coordinated flip after this "
                                       "transaction began or this statement was bound; retry "
                                       "the transaction")};
    }
  }
  return std::nullopt;
}

}  // namespace pgshift::proxy
