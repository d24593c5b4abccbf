#include "routing/transaction_control.h"

#include <algorithm>

#include "common/strings.h"

namespace pgshift::routing {

TransactionKind TransactionKindOf(PgQuery__TransactionStmtKind kind) {
  switch (kind) {
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START: return TransactionKind::kBegin;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT: return TransactionKind::kCommit;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK: return TransactionKind::kRollback;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT: return TransactionKind::kSavepoint;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE: return TransactionKind::kPrepare;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED:
      return TransactionKind::kCommitPrepared;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED:
      return TransactionKind::kRollbackPrepared;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE: return TransactionKind::kRelease;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
      return TransactionKind::kRollbackTo;
    default: return TransactionKind::kNone;
  }
}

std::vector<QueryStatement> SplitAtTransactionControl(const ParseTree& tree,
                                                      const std::vector<StatementInfo>& infos) {
  const bool control = std::any_of(infos.begin(), infos.end(), [](const StatementInfo& i) {
    return i.kind == StatementKind::kTransaction;
  });
  std::vector<QueryStatement> statements;
  if (!control || infos.size() < 2) return statements;
  const PgQuery__ParseResult& result = *tree.get();
  for (size_t i = 0; i < infos.size(); ++i) {
    TransactionKind kind = TransactionKind::kNone;
    if (infos[i].kind == StatementKind::kTransaction) {
      kind = TransactionKindOf(result.stmts[i]->stmt->transaction_stmt->kind);
    }
    std::string text = tree.StatementText(i);
    if (kind == TransactionKind::kNone && !statements.empty() &&
        statements.back().transaction == TransactionKind::kNone) {
      statements.back().sql = StrCat(statements.back().sql, ";", text);
    } else {
      statements.push_back({std::move(text), kind});
    }
  }
  return statements;
}

}  // namespace pgshift::routing
