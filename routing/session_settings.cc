#include "routing/session_settings.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "common/strings.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

namespace {

bool IsRole(const SettingChange& c) {
  return c.kind == SettingChange::kSession &&
         (c.key == "role" || c.key == "session_authorization");
}

// BEGIN's transaction modes as the SET TRANSACTION a server joining the
// transaction runs, spelled by the deparser: the modes are lent to that
// statement's tree.
std::optional<std::string> ModesAsSetTransaction(PgQuery__TransactionStmt* begin) {
  if (begin->n_options == 0) return std::nullopt;
  absl::StatusOr<ParseTree> set = ParseTree::Parse("SET TRANSACTION READ WRITE");
  if (!set.ok()) return std::nullopt;
  PgQuery__VariableSetStmt* stmt = set->get()->stmts[0]->stmt->variable_set_stmt;
  std::swap(stmt->n_args, begin->n_options);
  std::swap(stmt->args, begin->options);
  absl::StatusOr<std::string> text = set->Deparse();
  std::swap(stmt->n_args, begin->n_options);
  std::swap(stmt->args, begin->options);
  if (!text.ok()) return std::nullopt;
  return *text;
}

// The first word of `rest` past blanks and comments, when it is one that may
// begin a statement changing settings or opening a transaction; else "".
std::string_view KeyWordAt(std::string_view rest) {
  while (!rest.empty()) {
    if (std::string_view(" \t\n\r\f(").find(rest.front()) != std::string_view::npos) {
      rest.remove_prefix(1);
    } else if (rest.starts_with("--")) {
      size_t end = rest.find('\n');
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    } else if (rest.starts_with("/*")) {
      size_t end = rest.find("*/");
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 2);
    } else {
      break;
    }
  }
  for (std::string_view word :
       {"set", "reset", "discard", "begin", "start", "commit", "rollback"}) {
    if (rest.size() >= word.size() && ContainsIgnoreCase(rest.substr(0, word.size()), word)) {
      return word;
    }
  }
  return {};
}

}  // namespace

bool MayChangeSettings(std::string_view sql) {
  // Every statement begins the text or follows a ';' (one inside a string
  // or comment only costs a parse): its first word, past blanks and
  // comments, says whether it may be one. "UPDATE t SET ..." is not.
  for (size_t at = 0;; ++at) {
    std::string_view word = KeyWordAt(sql.substr(at));
    if (word == "begin" || word == "start") {
      // A BEGIN matters only with transaction modes, each of which has one
      // of these words: a plain BEGIN, once per transaction, is not parsed.
      for (std::string_view mode : {"isolation", "read", "deferrable"}) {
        if (ContainsIgnoreCase(sql, mode)) return true;
      }
    } else if (word == "set" || word == "reset" || word == "discard") {
      return true;
    }
    at = sql.find(';', at);
    if (at == std::string_view::npos) return false;
  }
}

bool MayBeginTransaction(std::string_view sql) {
  std::string_view word = KeyWordAt(sql);
  return word == "begin" || word == "start";
}

bool MayFinishPrepared(std::string_view sql) {
  std::string_view word = KeyWordAt(sql);
  return word == "commit" || word == "rollback";
}

std::vector<SettingChange> SettingChangesOf(std::string_view sql) {
  std::vector<SettingChange> changes;
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(sql);
  if (!tree.ok()) return changes;
  const PgQuery__ParseResult* result = tree->get();
  for (size_t i = 0; i < result->n_stmts; ++i) {
    const PgQuery__Node* node = result->stmts[i]->stmt;
    if (node == nullptr) continue;
    std::string text(absl::StripAsciiWhitespace(tree->StatementText(i)));
    if (node->node_case == PG_QUERY__NODE__NODE_DISCARD_STMT) {
      if (node->discard_stmt->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL) {
        changes.push_back({SettingChange::kDiscardAll, "", std::move(text)});
      }
      continue;
    }
    if (node->node_case == PG_QUERY__NODE__NODE_TRANSACTION_STMT) {
      PgQuery__TransactionStmt* begin = node->transaction_stmt;
      if (begin->kind != PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN &&
          begin->kind != PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START) {
        continue;
      }
      if (std::optional<std::string> modes = ModesAsSetTransaction(begin)) {
        SettingChange change{SettingChange::kTransaction, *modes, *modes};
        change.opens_transaction = true;
        changes.push_back(std::move(change));
      }
      continue;
    }
    if (node->node_case != PG_QUERY__NODE__NODE_VARIABLE_SET_STMT) continue;
    const PgQuery__VariableSetStmt* set = node->variable_set_stmt;
    std::string_view name = set->name;
    SettingChange change{SettingChange::kSession, std::string(name), std::move(text)};
    if (set->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL) {
      change.kind = SettingChange::kResetAll;
    } else if (set->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI) {
      // A snapshot names one of the first server's own: it means nothing
      // to another.
      if (name == "TRANSACTION SNAPSHOT") continue;
      if (name == "TRANSACTION") change.kind = SettingChange::kTransaction;
      change.key = change.sql;  // several settings at once: only the same text overrides it
    } else if (set->is_local) {
      change.kind = SettingChange::kTransaction;
    }
    changes.push_back(std::move(change));
  }
  return changes;
}

void SessionSettings::Record(SettingChange change, bool in_transaction) {
  if (!in_transaction && !change.opens_transaction) {
    if (change.kind != SettingChange::kTransaction) Apply(std::move(change));
  } else {
    transaction_sql_.push_back(change.sql);
    Append(transaction_, std::move(change));
  }
  Recount();
}

void SessionSettings::Recount() {
  bytes_ = 0;
  for (const auto* changes : {&session_, &transaction_}) {
    for (const SettingChange& c : *changes) bytes_ += Bytes(c);
  }
  for (const std::string& sql : transaction_sql_) bytes_ += sizeof(sql) + sql.size();
}

void SessionSettings::EndTransaction(bool committed) {
  if (committed) {
    for (SettingChange& change : transaction_) {
      if (change.kind != SettingChange::kTransaction) Apply(std::move(change));
    }
  }
  transaction_.clear();
  transaction_sql_.clear();
  Recount();
}

std::vector<std::string> SessionSettings::SessionStatements() const {
  std::vector<std::string> out;
  if (role_reset_) {
    out.push_back("RESET SESSION AUTHORIZATION");
    out.push_back("RESET ROLE");
  }
  out.push_back("RESET ALL");
  for (const SettingChange& change : session_) out.push_back(change.sql);
  return out;
}

void SessionSettings::Append(std::vector<SettingChange>& changes, SettingChange change) {
  std::erase_if(changes, [&change](const SettingChange& c) {
    return c.kind == change.kind && c.key == change.key;
  });
  changes.push_back(std::move(change));
}

void SessionSettings::Apply(SettingChange change) {
  ++version_;
  switch (change.kind) {
    case SettingChange::kResetAll:
      // RESET ALL leaves the role as it is.
      std::erase_if(session_, [](const SettingChange& c) { return !IsRole(c); });
      return;
    case SettingChange::kDiscardAll:
      role_reset_ = role_reset_ || std::any_of(session_.begin(), session_.end(), IsRole);
      session_.clear();
      return;
    case SettingChange::kSession:
      Append(session_, std::move(change));
      return;
    case SettingChange::kTransaction:
      return;
  }
}

}  // namespace pgshift::routing
