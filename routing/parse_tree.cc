#include "routing/parse_tree.h"

#include <pg_query.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/strings.h"

namespace pgshift::routing {

void ParseTree::Deleter::operator()(PgQuery__ParseResult* r) const {
  pg_query__parse_result__free_unpacked(r, nullptr);
}

absl::StatusOr<ParseTree> ParseTree::Parse(std::string_view sql) {
  ParseTree tree;
  tree.sql_ = std::string(sql);  // the parser wants a terminated string
  PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(tree.sql_.c_str());
  if (parsed.error != nullptr) {
    std::string message = parsed.error->message ? parsed.error->message : "syntax error";
    pg_query_free_protobuf_parse_result(parsed);
    return absl::InvalidArgumentError(message);
  }
  tree.tree_.reset(pg_query__parse_result__unpack(
      nullptr, parsed.parse_tree.len, reinterpret_cast<const uint8_t*>(parsed.parse_tree.data)));
  pg_query_free_protobuf_parse_result(parsed);
  if (!tree.tree_) return absl::InternalError("could not read libpg_query's parse tree");
  return tree;
}

std::string ParseTree::StatementText(size_t i) const {
  const PgQuery__RawStmt* raw = tree_->stmts[i];
  // stmt_len 0 means "to the end of the string".
  size_t start = static_cast<size_t>(raw->stmt_location);
  size_t len = raw->stmt_len == 0 ? std::string::npos : static_cast<size_t>(raw->stmt_len);
  return sql_.substr(start, len);
}

absl::StatusOr<std::string> ParseTree::Deparse() const { return Deparse(0, tree_->n_stmts); }

absl::StatusOr<std::string> ParseTree::Deparse(size_t begin, size_t end) const {
  // A shallow copy that borrows the statements: packing only reads them.
  PgQuery__ParseResult part = *tree_;
  part.stmts = tree_->stmts + begin;
  part.n_stmts = end - begin;
  std::vector<uint8_t> packed(pg_query__parse_result__get_packed_size(&part));
  pg_query__parse_result__pack(&part, packed.data());
  PgQueryProtobuf proto{packed.size(), reinterpret_cast<char*>(packed.data())};
  PgQueryDeparseResult result = pg_query_deparse_protobuf(proto);
  if (result.error != nullptr) {
    std::string message = result.error->message ? result.error->message : "deparse failed";
    pg_query_free_deparse_result(result);
    return absl::InternalError(StrCat("cannot write the rewritten statement: ", message));
  }
  std::string sql = result.query;
  pg_query_free_deparse_result(result);
  // The deparser has blind spots (a "$0", which the parser takes, comes
  // back as "?"): what PostgreSQL's parser would reject is never sent.
  if (absl::StatusOr<ParseTree> again = Parse(sql); !again.ok()) {
    return absl::InvalidArgumentError(
        StrCat("cannot write the rewritten statement as SQL PostgreSQL accepts: ",
               MessageOf(again.status())));
  }
  return sql;
}

std::string QualifiedName(const char* schema, const char* name) {
  return StrCat((schema != nullptr && *schema != '\0') ? schema : "public", ".", name);
}

void SetString(char** field, std::string_view value) {
  if (*field != nullptr && *field != protobuf_c_empty_string) std::free(*field);
  char* copy = static_cast<char*>(std::malloc(value.size() + 1));
  std::memcpy(copy, value.data(), value.size());
  copy[value.size()] = '\0';
  *field = copy;
}

PgQuery__Node* MakeStringNode(std::string_view value) {
  auto* str = static_cast<PgQuery__String*>(std::malloc(sizeof(PgQuery__String)));
  pg_query__string__init(str);
  SetString(&str->sval, value);
  auto* node = static_cast<PgQuery__Node*>(std::malloc(sizeof(PgQuery__Node)));
  pg_query__node__init(node);
  node->node_case = PG_QUERY__NODE__NODE_STRING;
  node->string = str;
  return node;
}

}  // namespace pgshift::routing
